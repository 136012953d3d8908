"""An interruption ends the reply even when something under it swallowed the first cancel."""

from __future__ import annotations

import asyncio

import pytest

from openlive.session import reply


async def test_a_swallowed_cancel_is_repeated_until_the_reply_ends(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(reply, "STOP_RECHECK_S", 0.05)
    cancels = 0

    async def stubborn() -> None:
        nonlocal cancels
        while True:
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                cancels += 1
                if cancels == 2:
                    raise
                # the first one is lost, as Python 3.11's wait_for lost it

    task = asyncio.create_task(stubborn())
    await asyncio.sleep(0)
    await asyncio.wait_for(reply._stop(task), 10)
    assert task.cancelled() and cancels == 2


async def test_a_reply_that_stops_is_cancelled_once() -> None:
    task = asyncio.create_task(asyncio.sleep(3600))
    await asyncio.sleep(0)
    await reply._stop(task)
    assert task.cancelled()
