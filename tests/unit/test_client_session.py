"""The session's resumption bookkeeping, without sockets: what is replayed, when a switch is safe."""

from __future__ import annotations

import asyncio

import pytest

from openlive.client import LiveError, LiveModel, LiveSession, wire
from openlive.protocol import server_messages as sm


class FakeConnection:
    def __init__(self) -> None:
        self.sent: list[str] = []

    async def send(self, text: str) -> None:
        self.sent.append(text)


def session(**config) -> tuple[LiveSession, FakeConnection]:
    live = LiveSession(LiveModel("m", config, base_url="https://127.0.0.1:1", api_key="k"))
    ws = FakeConnection()
    live._attach(ws)  # type: ignore[arg-type]
    live._connected.set()
    return live, ws


def arrive(live: LiveSession, *messages: dict) -> None:
    for message in messages:
        live._arrived(wire.parse_server_message(message))


async def test_transparent_replays_exactly_what_was_not_consumed():
    live, ws = session(session_resumption={"transparent": True})
    await live.send_text("one", turn_complete=False)
    await live.send_audio(b"\0\0" * 160)
    await live.send_audio(b"\1\0" * 160)
    arrive(live, sm.session_resumption_update("h1", last_consumed=2))
    assert live.handle == "h1"
    assert [wire.message_kind(m) for m in live._to_replay()] == ["realtimeInput.audio"]
    assert live._to_replay()[0]["realtimeInput"]["audio"]["data"] == wire.realtime_audio(b"\1\0" * 160)[
        "realtimeInput"]["audio"]["data"]
    assert len(ws.sent) == 3


async def test_without_transparency_conversation_since_the_last_quiet_handle_is_replayed():
    live, ws = session(session_resumption={})
    arrive(live, sm.session_resumption_update("h0"))
    assert live._quiet()
    await live.send_text("My name is Zorblax.")
    await live.send_audio(b"\0\0" * 160)  # audio is not replayed without an index
    assert not live._quiet()
    # A handle made before the server took the turn does not cover it.
    arrive(live, sm.session_resumption_update("h1"), sm.model_turn([sm.text_part("Hi")]))
    assert [wire.message_kind(m) for m in live._to_replay()] == ["clientContent"]
    arrive(live, sm.session_resumption_update(None))
    assert live.handle == "h1"  # resumable:false keeps the last good handle
    arrive(live, sm.generation_complete(), sm.session_resumption_update("h2"))
    assert live._to_replay() == [] and live.handle == "h2"
    assert not live._quiet()  # the reply's audio may still be coming
    arrive(live, sm.turn_complete())
    assert live._quiet()


async def test_go_away_schedules_a_switch_before_the_deadline():
    live, _ = session(session_resumption={})
    loop = asyncio.get_running_loop()
    arrive(live, sm.go_away(10))
    assert live._switch_by is not None and 8.5 < live._switch_by - loop.time() <= 9.0
    plain, _ = session()
    arrive(plain, sm.go_away(10))
    assert plain._switch_by is None  # without resumption, goAway is only reported


async def test_messages_sent_while_reconnecting_wait_in_order_and_are_bounded():
    live, ws = session(session_resumption={})
    live.model.replay_limit_bytes = 20_000
    live._connected.clear()
    await live.send_text("first")
    for _ in range(10):
        await live.send_audio(b"\0\0" * 1600)
    await live.send_text("last")
    assert ws.sent == []
    kinds = [wire.message_kind(m) for m in live._pending]
    assert kinds[0] == kinds[-1] == "clientContent" and 0 < kinds.count("realtimeInput.audio") < 10
    assert live._pending_bytes <= 20_000


async def test_receive_ends_after_close_and_raises_the_error_that_ended_it():
    live, _ = session()
    arrive(live, sm.model_turn([sm.text_part("a")]), sm.turn_complete())
    messages = [m async for m in live.receive_turn()]
    assert [m.text for m in messages] == ["a", None] and messages[-1].turn_complete
    live._finish()
    assert await live.next_message() is None
    assert await live.next_message() is None
    other, _ = session()
    other._error = LiveError(1011, "boom")
    other._finish()
    with pytest.raises(LiveError) as caught:
        await other.next_message()
    assert caught.value.code == 1011 and caught.value.reason == "boom" and not caught.value.fatal
    with pytest.raises(LiveError):
        await other.send_text("too late")
