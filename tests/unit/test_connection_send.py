"""Connection.send: a cancel never gets lost, even one that lands just as a frame goes out."""

from __future__ import annotations

import asyncio

import pytest

from openlive.protocol.bounded_json import Limits
from openlive.server.connection import Connection


class GatedSocket:
    """A WebSocket whose sends complete when the test says so."""

    def __init__(self) -> None:
        self.gate: asyncio.Future[None] | None = None
        self.sent: list[str] = []

    async def send_text(self, frame: str) -> None:
        self.gate = asyncio.get_running_loop().create_future()
        await self.gate
        self.sent.append(frame)


async def test_a_cancel_as_the_send_completes_still_cancels_the_sender() -> None:
    """On Python 3.11, `wait_for` returned the send's result to a task cancelled in the same pass
    of the loop as the send completed: the reply went on past its interruption (and waited for
    tool results forever, with the interruption waiting for it)."""
    ws = GatedSocket()
    conn = Connection(ws, Limits())  # type: ignore[arg-type]
    went_on = asyncio.Event()

    async def reply() -> None:
        await conn.send({"toolCall": {"functionCalls": []}})
        went_on.set()  # past an interruption: must never happen
        await asyncio.sleep(3600)

    task = asyncio.create_task(reply())
    while ws.gate is None:
        await asyncio.sleep(0)
    ws.gate.set_result(None)  # the frame goes out in the next pass of the loop...
    task.cancel()  # ...in which the interruption's cancel lands too
    await asyncio.wait({task}, timeout=5)
    assert task.cancelled() and not went_on.is_set()


async def test_a_send_that_cannot_go_out_loses_the_client() -> None:
    ws = GatedSocket()
    conn = Connection(ws, Limits(), send_timeout_s=0.05)  # type: ignore[arg-type]
    await conn.send({"setupComplete": {}})  # the gate never opens
    assert conn.lost.done() and conn.lost.result().code == 1008
    await conn.send({"setupComplete": {}})  # dropped: the client is gone
    assert ws.sent == []
