"""Fuzzing a live server's WebSocket endpoint: hostile frame sequences, and how each connection ended.

A case is a few frames sent in order on one connection, after a valid setup or instead of it:
protocol-shaped messages with arbitrary values, arbitrary JSON, raw bytes (bad UTF-8 included)
and deep nesting. The server must end every connection the way the real service would (1007,
1008 or 1009 with a reason that fits the frame) or carry on; never 1011, never a traceback.
Used by tests/e2e/test_fuzz_live.py (bounded, in CI) and bench/fuzz.py (longer).
"""

from __future__ import annotations

import asyncio
import json
import os
import ssl
from dataclasses import dataclass

import websockets
from hypothesis import strategies as st

from openlive.protocol.messages import ClientMessage
from tests.support.fuzz_frames import dumps, json_values, nested_json, shaped

LIVE_PATH = "/ws/google.ai.generativelanguage.v1beta.GenerativeService.BidiGenerateContent"
SETUP = json.dumps({"setup": {"model": "models/gemini-live-2.5-flash-preview",
                              "generationConfig": {"responseModalities": ["TEXT"]}}})
ACCEPTED_CLOSES = (1000, 1007, 1008, 1009)
# Frames a well-behaved client sends: mixed in, so that cases get past the first refusal and
# reach the session's later states (a turn in progress, audio mid-utterance, manual activity).
VALID = [
    json.dumps({"clientContent": {"turns": [{"role": "user", "parts": [{"text": "hi"}]}], "turnComplete": True}}),
    json.dumps({"realtimeInput": {"text": "hello"}}),
    json.dumps({"realtimeInput": {"audio": {"mimeType": "audio/pcm;rate=16000", "data": "AAAAAAAAAAA="}}}),
    json.dumps({"realtimeInput": {"audioStreamEnd": True}}),
    json.dumps({"realtimeInput": {"activityStart": {}}}),
    json.dumps({"toolResponse": {"functionResponses": [{"id": "x", "name": "f", "response": {"ok": True}}]}}),
    json.dumps({"clientContent": {"turnComplete": True}}),
]


@dataclass(frozen=True)
class RawText:
    """Bytes sent as a text frame as they are: invalid UTF-8, which the websockets client would never send."""

    payload: bytes

    def frame(self) -> bytes:
        mask, n = os.urandom(4), len(self.payload)
        head = bytes([0x81]) + (bytes([0x80 | n]) if n < 126 else bytes([0x80 | 126]) + n.to_bytes(2, "big"))
        return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(self.payload))


valid = st.sampled_from(VALID)
one_frame = st.one_of(
    valid, valid, valid,  # three branches of ten: a frame a real client sends
    st.binary(max_size=64).map(RawText),
    st.sampled_from([b"\xff\xfe", b'{"setup": "\xc3\x28"}', b'{"realtimeInput": {"text": "\xed\xa0\x80"}}']).map(RawText),
    shaped(ClientMessage).map(dumps),
    json_values.map(dumps),
    json_values.map(lambda v: dumps(v).encode("utf-8", "surrogatepass")),  # bad UTF-8 in a binary frame
    st.binary(max_size=64),
    st.integers(90, 3000).map(nested_json),
)
# (whether a valid setup goes first, the frames after it)
cases = st.tuples(st.booleans(), st.lists(one_frame, min_size=1, max_size=4))


@dataclass(frozen=True)
class Ending:
    code: int | None  # the server's close code; None: still open when we left (it took every frame)
    reason: str


async def probe(uri: str, with_setup: bool, frames: list[str | bytes | RawText], *, tls: ssl.SSLContext | None = None,
                linger_s: float = 0.3) -> Ending:
    """Send a case on a fresh connection; how the server ended it (or that it did not)."""
    async with websockets.connect(uri, ssl=tls, max_size=None, open_timeout=30) as ws:
        try:
            if with_setup:
                await ws.send(SETUP)
                await asyncio.wait_for(ws.recv(), 30)  # setupComplete
            for frame in frames:
                if isinstance(frame, RawText):
                    ws.transport.write(frame.frame())
                else:
                    await ws.send(frame)
            while True:  # read until the server closes, or has been quiet for a moment
                await asyncio.wait_for(ws.recv(), linger_s)
        except (TimeoutError, asyncio.TimeoutError):
            return Ending(None, "")
        except websockets.ConnectionClosed as closed:
            if closed.rcvd is None:
                return Ending(1006, "no close frame")
            return Ending(closed.rcvd.code, closed.rcvd.reason)


def acceptable(ending: Ending) -> bool:
    """As the real service ends a bad connection: a client error with a reason, or no error at all."""
    if ending.code is None or ending.code == 1000:
        return True
    return ending.code in ACCEPTED_CLOSES and bool(ending.reason) and len(ending.reason.encode()) <= 123
