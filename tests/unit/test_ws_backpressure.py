"""The WebSocket protocol under a client that sends faster than its session reads (ws_protocol.py).

Sans-I/O: bytes go into the protocol as the transport would hand them over, a fake transport
records whether the socket is being read, and the test takes messages as the app would. A
client is never closed for its speed: what it sent waits as bytes (then in the kernel, TCP
pushing back), parsed only a few dozen messages ahead of the app, and every frame arrives in order.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from uvicorn.config import Config
from uvicorn.server import ServerState
from websockets.client import ClientProtocol
from websockets.uri import parse_uri

from openlive.server import ws_protocol
from openlive.server.ws_protocol import GuardedWebSocketProtocol


class FakeTransport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.reading = True
        self.pauses = 0
        self.written = bytearray()
        self.unsent = 0  # what get_write_buffer_size says
        self.closing = False
        self.aborted = False
        self.delivered = 0  # of `written`, what the client has been given

    def to_client(self) -> bytes:
        data, self.delivered = bytes(self.written[self.delivered:]), len(self.written)
        return data

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 5000), "sockname": ("127.0.0.1", 8443)}.get(name, default)

    def pause_reading(self) -> None:
        assert self.reading, "paused twice"
        self.reading, self.pauses = False, self.pauses + 1

    def resume_reading(self) -> None:
        assert not self.reading, "resumed while reading"
        self.reading = True

    def write(self, data: bytes) -> None:
        self.written += data

    def get_write_buffer_size(self) -> int:
        return self.unsent

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self.closing = True

    def abort(self) -> None:
        self.closing = self.aborted = True


async def app(scope: Any, receive: Any, send: Any) -> None:
    await send({"type": "websocket.accept"})
    await asyncio.Event().wait()  # the test reads in its place


async def open_protocol(ping_s: float | None = None) -> tuple[GuardedWebSocketProtocol, FakeTransport, ClientProtocol]:
    config = Config(app=app, ws=GuardedWebSocketProtocol, ws_ping_interval=ping_s, ws_ping_timeout=ping_s,
                    ws_per_message_deflate=False, log_config=None)
    config.load()
    protocol = GuardedWebSocketProtocol(config=config, server_state=ServerState(), app_state={})
    transport = FakeTransport()
    protocol.connection_made(transport)
    client = ClientProtocol(parse_uri("ws://127.0.0.1:8443/ws"))
    client.send_request(client.connect())
    protocol.data_received(b"".join(client.data_to_send()))
    assert (await protocol.receive())["type"] == "websocket.connect"
    for _ in range(3):  # the app task accepts
        await asyncio.sleep(0)
    client.receive_data(transport.to_client())
    assert protocol.handshake_complete and client.state.name == "OPEN"
    return protocol, transport, client


@pytest.fixture(autouse=True)
async def _stop_protocols():
    yield
    for task in asyncio.all_tasks():  # the apps waiting forever, and nothing else of the test
        if task is not asyncio.current_task() and task.get_coro().__qualname__.endswith("run_asgi"):
            task.cancel()


def chunk(i: int) -> bytes:
    """A realtime audio chunk as a client sends it: 16 samples of PCM, numbered to check the order."""
    return json.dumps({"realtimeInput": {"audio": {"mimeType": "audio/pcm;rate=16000",
                                                   "data": f"{i:044d}"}}}).encode()


async def test_a_read_full_of_frames_is_parsed_only_a_few_dozen_ahead_of_the_app_and_none_is_lost():
    protocol, transport, client = await open_protocol()
    for i in range(20_000):
        client.send_text(chunk(i))
    wire = b"".join(client.data_to_send())  # ~2.4 MB: the client sends as fast as the socket takes it
    at, taken, most_queued, most_unparsed = 0, 0, 0, 0
    reads = 0
    while taken < 20_000:
        if transport.reading and at < len(wire):  # the kernel hands over one read (asyncio: 256 KiB)
            protocol.data_received(wire[at:at + (256 << 10)])
            at, reads = at + (256 << 10), reads + 1
        most_queued = max(most_queued, protocol.queue.qsize())
        most_unparsed = max(most_unparsed, len(protocol._unparsed) - protocol._parsed_to)
        message = await asyncio.wait_for(protocol.receive(), 5)  # the app takes one
        assert message == {"type": "websocket.receive", "text": chunk(taken).decode()}  # in order, none lost
        taken += 1
    assert at >= len(wire) and reads == -(-len(wire) // (256 << 10))
    # Held for the app: a few dozen messages (one piece of ~30 chunks past the mark), not a read's 2,000.
    assert most_queued <= ws_protocol.QUEUE_HIGH + ws_protocol.PIECE_BYTES // 100, most_queued
    assert most_unparsed <= 256 << 10
    # The socket was not read while the app was behind: that is what slows the client down.
    assert transport.pauses >= reads - 1
    assert protocol.queue.empty() and transport.reading and not transport.closing


async def test_tiny_empty_frames_are_bounded_too():
    protocol, transport, client = await open_protocol()
    for _ in range(40_000):
        client.send_binary(b"")  # 6 bytes each on the wire: a read holds 43,000 of them
    wire = b"".join(client.data_to_send())
    protocol.data_received(wire[:256 << 10])
    assert not transport.reading
    # One piece's worth at most beyond the mark: ~680 small dicts, not 43,000.
    assert protocol.queue.qsize() <= ws_protocol.QUEUE_HIGH + ws_protocol.PIECE_BYTES // 6


async def test_a_client_behind_its_own_frames_is_not_closed_by_the_keepalive():
    protocol, transport, client = await open_protocol(ping_s=0.05)
    for i in range(2000):
        client.send_text(chunk(i))
    protocol.data_received(b"".join(client.data_to_send()))  # the app is behind: reading stops
    assert not transport.reading
    await asyncio.sleep(0.5)  # pings went out; the client's pongs are behind its unread frames
    assert not transport.closing and not protocol.close_sent
    # Caught up, it answers the ping the protocol is waiting on, and the keepalive carries on.
    for _ in range(2000):
        await asyncio.wait_for(protocol.receive(), 5)
    assert transport.reading and protocol.pending_ping_payload is not None
    client.receive_data(transport.to_client())
    protocol.data_received(b"".join(client.data_to_send()))  # the pong
    assert protocol.pending_ping_payload is None and not transport.closing
    protocol.connection_lost(None)


async def test_a_silent_client_that_does_not_answer_pings_is_still_closed():
    protocol, transport, client = await open_protocol(ping_s=0.05)
    await asyncio.sleep(0.5)
    assert transport.closing and protocol.close_sent


async def test_a_ping_flood_from_a_client_that_does_not_read_is_not_parsed_past_the_write_bound():
    protocol, transport, client = await open_protocol()
    for _ in range(3):
        client.send_ping(b"x" * 100)
    client.send_text(chunk(0))
    wire = b"".join(client.data_to_send())
    protocol.data_received(wire[:300])  # two pings (106 bytes each) and a piece of the third
    assert len(transport.to_client()) == 2 * 102  # answered at once
    transport.unsent = ws_protocol.MAX_UNSENT_BYTES + 1  # ... and never read: the pongs pile up
    protocol.data_received(wire[300:])
    assert transport.to_client() == b"" and not transport.reading  # not parsed: no more pongs
    transport.unsent = 0
    protocol.resume_writing()  # it read them at last
    assert len(transport.to_client()) == 102
    assert (await protocol.receive())["text"] == chunk(0).decode()
    assert transport.reading


@pytest.mark.parametrize("pieces", [1, 7])
async def test_the_clients_close_after_its_frames_reaches_the_app_after_them(pieces):
    protocol, transport, client = await open_protocol()
    for i in range(100):
        client.send_text(chunk(i))
    client.send_close(1000)
    wire = b"".join(client.data_to_send())
    size = -(-len(wire) // pieces)
    messages = []
    for at in range(0, len(wire), size):
        while not transport.reading:
            messages.append(await protocol.receive())
        protocol.data_received(wire[at:at + size])
    while not messages or messages[-1]["type"] != "websocket.disconnect":
        messages.append(await asyncio.wait_for(protocol.receive(), 5))
    assert [m.get("text") for m in messages[:-1]] == [chunk(i).decode() for i in range(100)]
    assert messages[-1]["code"] == 1000


async def test_large_frames_are_held_one_at_a_time():
    protocol, transport, client = await open_protocol()
    big = [bytes([i]) * (1 << 20) for i in range(6)]  # 1 MiB each: video frames, say
    for frame in big:
        client.send_binary(frame)
    wire = b"".join(client.data_to_send())
    at, got, most_queued = 0, [], 0
    while len(got) < len(big):
        while transport.reading and at < len(wire):
            protocol.data_received(wire[at:at + (256 << 10)])
            at += 256 << 10
            most_queued = max(most_queued, protocol.queue.qsize())
        got.append((await asyncio.wait_for(protocol.receive(), 5))["bytes"])
    assert got == big
    assert most_queued == 1  # as much as the app is handed at once; the rest waits unread
