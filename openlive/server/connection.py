"""One client's WebSocket, as the session writes to it: sends in order and bounded in time.

A client that stops reading (a frozen tab, a process stopped in a debugger, a stalled network)
fills the TCP buffers, and then every send waits: the reply that is speaking holds its engines,
and whatever else the session says queues up behind it. Waiting for the ping timeout would hold
all that for ~40 s and then fail the reply mid-send. Here a send that cannot hand its frame to
the transport within `send_timeout_s` gives the client up: the connection is `lost` with a
1008, which the session's pump closes with. Once lost, or once closed, further sends are
dropped: the session is ending, and what it still says has nowhere to go (writing after the
close is what made uvicorn log "Unexpected ASGI message 'websocket.send', after sending
'websocket.close'" and the reply fail with 1011).

Reading is never a reason to close. A client may send faster than its session handles frames (a
recording streamed faster than real time, Firebase's Web SDK sending ~375 tiny audio frames a
second, one per 128-sample block, or 100,000 chunks as fast as the socket takes them): the
protocol (`ws_protocol.py`) holds a few dozen parsed frames for it and stops reading its socket
until the session catches up, so TCP flow control slows the sender down. Every frame is handled,
in order, as fast as the session can; the memory it takes is bounded per connection.

Each frame yields to the event loop before it is handled, so one client's queued frames never
run back to back: a flood of tiny frames cannot hold the loop and stall every other session and
`/healthz`. Yielding before each frame bounds one client's share of a pass of the event loop, not
the pass: a hundred audio sessions whose frames arrive together (a client process that was
descheduled, then sends them all) made one pass handle a hundred frames, ~1 ms each, and timers,
`/healthz` and replies waited 100-300 ms behind them. `Turnstile` ends a pass's frame handling
after `PASS_BUDGET_S`: the frames still waiting go first in the next pass, after the other work.

An operator may also cap a connection's frames a second (`[server] max_frames_per_s`, off by
default): past it, reading waits (more backpressure), and still nothing is closed.

What the server holds for a stalled reader is bounded by the transport's write buffer (its high
water mark, 64 KiB) plus one frame (< 1 MiB): sends wait rather than queue.
`ws_protocol.py` makes sure that the close to such a client does not wait for the buffer to
drain.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from .. import metrics
from ..protocol import encode_server_message
from ..protocol.bounded_json import Limits
from ..protocol.errors import CloseCode, ProtocolError, fit_reason

log = logging.getLogger(__name__)


# How long one pass of the event loop handles client frames before the rest wait for the next.
PASS_BUDGET_S = 0.02


def not_reading(seconds: float) -> ProtocolError:
    return ProtocolError(CloseCode.POLICY, f"The client did not read the server's messages for {seconds:g} s.")


class Connection:
    """One client socket: serialized sends, each bounded in time; a close with a code and reason at most once."""

    def __init__(self, ws: WebSocket, limits: Limits, *, send_timeout_s: float = 10.0,
                 max_frames_per_s: float = 0.0) -> None:
        self.ws = ws
        self.limits = limits  # what one client frame may hold, for parse_client_frame
        self.send_timeout_s = send_timeout_s
        self._pace = FramePace(max_frames_per_s) if max_frames_per_s > 0 else None  # 0: no cap
        self._lock = asyncio.Lock()
        self._closed = False
        # Set once the client can no longer be written to: the error to close with (a client that
        # went away: WebSocketDisconnect).
        self.lost: asyncio.Future[Exception] = asyncio.get_running_loop().create_future()

    async def send(self, message: dict[str, Any]) -> None:
        if self._gone:
            return
        frames = encode_server_message(message)
        async with self._lock:
            for frame in frames:
                if self._gone:
                    return
                try:
                    # Not `wait_for`: on Python 3.11 it returns the send's result when the task is
                    # cancelled just as the send completes, and the cancel is lost. A reply then
                    # ran on past an interruption into its wait for tool results, forever, and
                    # the interruption waited for it (the session stalled: nothing sent or read).
                    async with asyncio.timeout(self.send_timeout_s):
                        await self.ws.send_text(frame)
                except TimeoutError:
                    log.warning("the client has read nothing for %.0f s: closing its session", self.send_timeout_s)
                    self._lose(not_reading(self.send_timeout_s))
                except WebSocketDisconnect as exc:
                    self._lose(exc)
                except (RuntimeError, OSError):  # the socket closed under the send
                    self._lose(WebSocketDisconnect(1006))

    async def receive(self) -> str | bytes:
        # Yield (or wait out the operator's cap) first: a client's queued frames never run back to
        # back. However long they wait, nothing is dropped or closed: the protocol stops reading.
        wait = self._pace.wait(time.monotonic()) if self._pace is not None else 0.0
        await asyncio.sleep(wait)
        message = await self.ws.receive()
        if message["type"] == "websocket.disconnect":  # gone already: nothing to close with a reason
            raise WebSocketDisconnect(message.get("code", 1000), message.get("reason"))
        await TURNSTILE.enter()
        metrics.frame_received(paced=wait > 0)
        text = message.get("text")
        return text if text is not None else message.get("bytes") or b""

    async def close(self, code: int, reason: str = "") -> None:
        self._closed = True
        if self.ws.application_state == WebSocketState.DISCONNECTED or self.ws.client_state == WebSocketState.DISCONNECTED:
            return
        try:
            # Whatever built the reason, it must encode and fit the close frame, or the close fails.
            await self.ws.close(code=code, reason=fit_reason(reason))
        except (RuntimeError, OSError, WebSocketDisconnect):
            pass  # the client went away first

    @property
    def _gone(self) -> bool:
        return self._closed or self.lost.done()

    def _lose(self, error: Exception) -> None:
        if not self.lost.done():
            self.lost.set_result(error)


class FramePace:
    """A token bucket over client frames: `rate` a second on average, `rate` in a burst."""

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self._tokens = rate
        self._at: float | None = None

    def wait(self, now: float) -> float:
        """Seconds to wait before reading the next frame (0: at once), that frame counted."""
        if self._at is not None:
            self._tokens = min(self.rate, self._tokens + (now - self._at) * self.rate)
        self._at = now
        self._tokens -= 1
        return 0.0 if self._tokens >= 0 else -self._tokens / self.rate


class Turnstile:
    """Lets client frames be handled for at most `budget_s` of each pass of the event loop.

    A pass runs every callback that was ready when it began; a frame that arrives in a pass that
    has already spent its budget waits (`sleep(0)`) for the next one, where the waiting frames go
    first, after which timers and new I/O get their turn. At least one frame goes through each
    pass, so reading never stops."""

    def __init__(self, budget_s: float) -> None:
        self.budget_s = budget_s
        self._loop: asyncio.AbstractEventLoop | None = None  # None: no frame handled in this pass yet
        self._started = 0.0

    async def enter(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            now = time.monotonic()
            if self._loop is not loop:  # the pass's first frame (or the first on this loop)
                self._loop, self._started = loop, now
                loop.call_soon(self._next_pass)  # runs before the frames deferred in this pass
                return
            if now - self._started < self.budget_s:
                return
            await asyncio.sleep(0)

    def _next_pass(self) -> None:
        self._loop = None


TURNSTILE = Turnstile(PASS_BUDGET_S)
