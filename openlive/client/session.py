"""`LiveSession`: a Live API conversation over one WebSocket at a time (`LiveModel` opens it).

A session owns one background task (the supervisor) that reads server frames, keeps track of the
resumption state, and hands every message to `receive()` through a bounded queue. When the
setup enables `sessionResumption`, the supervisor also keeps the conversation alive across
connections:

- on `goAway` it waits for a quiet point (no turn open, a fresh handle) or until shortly before
  the deadline, opens a new connection with the latest handle, and closes the old one;
- on a connection that drops without an error the server meant (anything but 1002/1003/1007/
  1008/1009/1010), it reconnects with the latest handle, retrying for `resume_timeout_s`.

While it reconnects, messages the application sends are queued and go out, in order, once the new
connection is set up. Messages the old connection may not have delivered are replayed first:
with transparent resumption exactly those after `lastConsumedClientMessageIndex` (messages are
numbered per connection, the setup being 0); otherwise, best effort, the conversational ones
(`clientContent`, realtime text, `toolResponse`, `contextUpdate`) sent since the last handle that
arrived at a quiet point. `receive()` keeps yielding across the switch; `resume_count`,
`resumed` and `on_resume` show that it happened.
"""

from __future__ import annotations

import asyncio
import logging
import ssl as ssl_module
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from typing import Any, Protocol

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus, InvalidURI

from . import wire
from .audio import AudioConversation, AudioDevice, SoundDeviceAudio
from .errors import FATAL_CLOSE_CODES, LiveError
from .wire import ContentLike, LiveMessage

log = logging.getLogger("openlive.client")

Listener = Callable[[LiveMessage], None]

# Kinds of client message replayed after a drop when the server gives no consumed index.
_CONVERSATIONAL = ("clientContent", "realtimeInput.text", "toolResponse", "contextUpdate")
_STABLE_S = 60.0  # a connection that lasted this long was not a failing resume
_MAX_AUDIO_CHUNK = 256_000  # bytes of PCM per realtimeInput message (8 s at 16 kHz)
_END = object()


class SessionSettings(Protocol):
    """Where a session connects and how it behaves: what `LiveModel` holds (see its docstring)."""

    endpoint: wire.Endpoint
    setup: dict[str, Any]
    auto_resume: bool
    resume_timeout_s: float
    max_resume_attempts: int
    open_timeout_s: float
    max_message_bytes: int
    receive_queue_size: int
    replay_limit_bytes: int

    def ssl_argument(self) -> dict[str, Any]:
        """The `ssl` keyword for websockets' `connect`, if any."""


class LiveSession:
    """One conversation. Send with the `send_*` methods; read with `receive()` (one reader at a time)."""

    def __init__(self, model: SessionSettings) -> None:
        self.model = model
        self.session_id: str | None = None
        self.resume_count = 0
        self.last_resume_reason: str | None = None
        self.on_resume: list[Callable[[str], None]] = []
        self.dropped_messages = 0  # messages discarded because nobody read receive() for too long
        self._setup = model.setup
        self._resumption = model.auto_resume and wire.resumption_enabled(self._setup)
        self._transparent = wire.transparent_enabled(self._setup)
        self._handle: str | None = (self._setup["setup"].get("sessionResumption") or {}).get("handle")
        self._ws: ClientConnection | None = None
        self._queue: deque[Any] = deque()
        self._queue_event = asyncio.Event()
        self._listeners: list[Listener] = []
        self._send_lock = asyncio.Lock()
        self._connected = asyncio.Event()
        self._pending: deque[dict[str, Any]] = deque()  # sent while reconnecting
        self._pending_bytes = 0
        self._log: deque[tuple[int, dict[str, Any], int]] = deque()  # (index, message, size) for replay
        self._log_bytes = 0
        self._index = 0  # of the last message sent on this connection; the setup is 0
        self._last_consumed = 0
        self._turn_open = False
        self._generating = False  # a turn whose reply is still being generated (no handle can cover it)
        self._handle_fresh = False
        self._switch_by: float | None = None  # after goAway: switch connections by this loop time
        self._task: asyncio.Task[None] | None = None
        self._attached_at = 0.0
        self._unproductive_resumes = 0  # resumes after a drop since the last completed turn
        self._background: set[asyncio.Task[None]] = set()
        self._closing = False
        self._finished = False
        self._error: LiveError | None = None
        self.resumed = asyncio.Event()
        self._conversation: AudioConversation | None = None

    # ------------------------------------------------------------------ public state

    @property
    def handle(self) -> str | None:
        """The latest resumption handle (pass it as `session_resumption={"handle": ...}` to resume later)."""
        return self._handle

    @property
    def closed(self) -> bool:
        return self._finished or self._closing

    @property
    def error(self) -> LiveError | None:
        """The error that ended the session, if one did."""
        return self._error

    def add_listener(self, listener: Listener) -> None:
        """Call `listener(message)` for every server message as it arrives, before `receive()` sees it.

        Listeners run on the event loop and must be quick (the audio player is one)."""
        self._listeners.append(listener)

    def remove_listener(self, listener: Listener) -> None:
        if listener in self._listeners:
            self._listeners.remove(listener)

    # ------------------------------------------------------------------ sending

    async def send_text(self, text: str, turn_complete: bool = True) -> None:
        """A user turn of text (`clientContent`); it interrupts a reply in progress."""
        await self._send(wire.client_content([text], turn_complete))

    async def send_turns(self, turns: ContentLike | Sequence[ContentLike], turn_complete: bool = True) -> None:
        """Turns of conversation: strings are user text, dicts are Content (`{"role", "parts"}`)."""
        await self._send(wire.client_content(turns, turn_complete))

    async def send_realtime_text(self, text: str) -> None:
        """Text as realtime input (`realtimeInput.text`), like speech that was typed."""
        await self._send(wire.realtime_text(text))

    async def send_audio(self, pcm: bytes, rate: int = 16000) -> None:
        """16-bit little-endian mono PCM at `rate` Hz as realtime input (split into messages of at most 8 s)."""
        for start in range(0, len(pcm), _MAX_AUDIO_CHUNK):
            await self._send(wire.realtime_audio(pcm[start:start + _MAX_AUDIO_CHUNK], rate))

    async def send_audio_stream_end(self) -> None:
        """The microphone is off: with automatic activity detection, the turn may end now."""
        await self._send(wire.audio_stream_end())

    async def send_activity_start(self) -> None:
        """Manual activity detection: the user started speaking."""
        await self._send(wire.activity_start())

    async def send_activity_end(self) -> None:
        """Manual activity detection: the user stopped speaking."""
        await self._send(wire.activity_end())

    async def send_video_frame(self, image: bytes, mime_type: str = "image/jpeg") -> None:
        """One camera or screen frame (about one a second is what the Live API expects)."""
        await self._send(wire.realtime_video(image, mime_type))

    async def send_tool_response(self, responses: Mapping[str, Any] | Iterable[Mapping[str, Any]]) -> None:
        """Answer function calls: `{"id", "name", "response"}` dicts (see `FunctionCall.response`)."""
        await self._send(wire.tool_response(responses))

    async def send_context_update(self, system_instruction: ContentLike | None = None, tools: Any = None) -> None:
        """Change the system instruction and/or the tools from the next turn on."""
        await self._send(wire.context_update(system_instruction, tools))

    async def send_raw(self, message: Mapping[str, Any]) -> None:
        """Any client message as a JSON-ready dict, e.g. `{"realtimeInput": {...}}`."""
        await self._send(dict(message))

    # ------------------------------------------------------------------ receiving

    async def next_message(self, timeout: float | None = None) -> LiveMessage | None:
        """The next server message; None once the session has ended normally. Raises LiveError on an error
        and TimeoutError if `timeout` seconds pass first."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._queue:
            if self._finished:
                self._raise_if_failed()
                return None
            self._queue_event.clear()
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            await asyncio.wait_for(self._queue_event.wait(), remaining)
        item = self._queue.popleft()
        if item is _END:
            self._queue.appendleft(item)  # every later call sees the end too
            self._raise_if_failed()
            return None
        return item  # type: ignore[no-any-return]

    def _raise_if_failed(self) -> None:
        if self._error is not None:
            raise self._error

    async def receive(self) -> AsyncIterator[LiveMessage]:
        """Every server message, across reconnections, until the session ends (raises LiveError on an error)."""
        while (message := await self.next_message()) is not None:
            yield message

    async def receive_turn(self, timeout: float | None = None) -> AsyncIterator[LiveMessage]:
        """Messages up to and including the next `turnComplete` (tool calls, goAway, ... come along)."""
        while (message := await self.next_message(timeout)) is not None:
            yield message
            if message.turn_complete:
                return

    # ------------------------------------------------------------------ audio

    async def start_audio_conversation(self, device: AudioDevice | None = None,
                                       **options: Any) -> AudioConversation:
        """Talk through the microphone and speaker: mic audio goes up at 16 kHz, replies play at 24 kHz,
        playback stops on `interrupted`, and an echo gate keeps the mic from answering the speaker.

        `device` defaults to the system's (needs `pip install openlive[audio]`); options go to
        `AudioConversation` (echo gate settings, `on_interrupted`, ...)."""
        if self._conversation is not None:
            raise RuntimeError("an audio conversation is already running on this session")
        conversation = AudioConversation(self, device if device is not None else SoundDeviceAudio(), **options)
        await conversation.start()
        self._conversation = conversation
        return conversation

    async def stop_audio_conversation(self) -> None:
        conversation, self._conversation = self._conversation, None
        if conversation is not None:
            await conversation.stop()

    # ------------------------------------------------------------------ closing

    async def close(self) -> None:
        """End the session (close 1000) and everything it started; `receive()` then ends."""
        if self._closing:
            return
        self._closing = True
        await self.stop_audio_conversation()
        task, self._task = self._task, None
        if task is not None and task is not asyncio.current_task():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        ws = self._ws
        if ws is not None:
            try:
                await asyncio.wait_for(ws.close(), 5)
            except (TimeoutError, OSError, ConnectionClosed):
                pass
        self._finish()

    async def __aenter__(self) -> LiveSession:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # ------------------------------------------------------------------ internals: connections

    async def _start(self) -> None:
        ws, early = await self._open(self._handle)
        self._attach(ws)
        self._connected.set()
        for message in early:
            self._arrived(message)
        self._task = asyncio.create_task(self._supervise(), name="openlive-live-session")

    async def _open(self, handle: str | None) -> tuple[ClientConnection, list[LiveMessage]]:
        """Connect, send the setup, and wait for setupComplete; messages that came first are returned."""
        endpoint = self.model.endpoint
        headers = dict(endpoint.headers)
        user_agent = headers.pop("user-agent", None)
        setup = wire.with_handle(self._setup, handle) if self._resumption or handle else self._setup
        try:
            ws = await connect(endpoint.url, additional_headers=headers, user_agent_header=user_agent,
                               open_timeout=self.model.open_timeout_s, max_size=self.model.max_message_bytes,
                               close_timeout=5, **self.model.ssl_argument())
        except InvalidStatus as exc:
            body = exc.response.body.decode("utf-8", "replace").strip() if exc.response.body else ""
            raise LiveError(exc.response.status_code, body or f"HTTP {exc.response.status_code}") from None
        except ssl_module.SSLCertVerificationError as exc:
            raise LiveError(1015, f"TLS certificate of {endpoint.url} not trusted ({exc.verify_message}); "
                                  "set SSL_CERT_FILE to the server's certificate") from None
        except (TimeoutError, OSError, InvalidHandshake, InvalidURI) as exc:
            raise LiveError(1006, f"cannot connect to {endpoint.url}: {exc or type(exc).__name__}") from None
        early: list[LiveMessage] = []
        try:
            await ws.send(wire.encode_json(setup))
            while True:
                frame = await asyncio.wait_for(ws.recv(decode=False), self.model.open_timeout_s + 20)
                message = wire.parse_server_message(frame)
                if message.setup_complete:
                    self.session_id = message.session_id or self.session_id
                    return ws, early
                early.append(message)  # as @google/genai does: kept for after setupComplete
        except ConnectionClosed as exc:
            code, reason = _close_of(exc)
            raise LiveError(code, reason) from None
        except TimeoutError:
            await ws.close()
            raise LiveError(1006, "no setupComplete from the server") from None
        except ValueError as exc:
            await ws.close(1007, "bad JSON")
            raise LiveError(1007, f"bad server message: {exc}") from None

    def _attach(self, ws: ClientConnection) -> None:
        self._ws = ws
        self._index = 0
        self._last_consumed = 0
        self._log.clear()
        self._log_bytes = 0
        self._switch_by = None
        self._handle_fresh = False
        self._attached_at = asyncio.get_running_loop().time()

    async def _supervise(self) -> None:
        try:
            while True:
                ws = self._ws
                assert ws is not None
                outcome = await self._pump(ws)
                if self._closing:
                    return
                if outcome is None:
                    await self._resume("goAway")
                    continue
                code, reason = outcome
                if asyncio.get_running_loop().time() - self._attached_at > _STABLE_S:
                    self._unproductive_resumes = 0
                if (self._resumption and code not in FATAL_CLOSE_CODES
                        and self._unproductive_resumes < self.model.max_resume_attempts):
                    # Counted until a turn completes: a reply that fails the server every time it is
                    # replayed must end the session, not loop.
                    self._unproductive_resumes += 1
                    log.info("connection closed (%s %s): resuming", code, reason)
                    await self._resume(f"connection closed ({code} {reason})".strip())
                    continue
                if code == 1000:
                    return  # the server ended the session normally
                raise LiveError(code, reason)
        except LiveError as exc:
            self._error = exc
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug must still end receive(), not hang it
            log.exception("live session supervisor failed")
            self._error = LiveError(1006, f"client failure: {exc}")
        finally:
            self._finish()

    async def _pump(self, ws: ClientConnection) -> tuple[int, str] | None:
        """Read `ws` until it closes: (code, reason); None when it is time to switch after goAway."""
        loop = asyncio.get_running_loop()
        while True:
            timeout = None
            if self._switch_by is not None:
                if self._quiet() or loop.time() >= self._switch_by:
                    return None
                timeout = self._switch_by - loop.time()
            try:
                frame = await asyncio.wait_for(ws.recv(decode=False), timeout)
            except TimeoutError:
                return None
            except ConnectionClosed as exc:
                return _close_of(exc)
            try:
                message = wire.parse_server_message(frame)
            except ValueError as exc:
                log.warning("ignoring a server message that is not JSON: %s", exc)
                continue
            self._arrived(message)

    async def _resume(self, reason: str) -> None:
        """Open a new connection with the latest handle, replay what may be lost, then flush the queue."""
        self._connected.clear()
        old = self._ws
        replay = self._to_replay()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.model.resume_timeout_s
        delay = 0.1
        while True:
            try:
                ws, early = await self._open(self._handle)
                break
            except LiveError as exc:
                if exc.fatal or loop.time() + delay > deadline:
                    raise
                log.info("resume attempt failed (%s); retrying in %.1f s", exc, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)
        if old is not None:
            closing = asyncio.create_task(_close_quietly(old))
            self._background.add(closing)
            closing.add_done_callback(self._background.discard)
        self._attach(ws)
        async with self._send_lock:
            self._turn_open = self._generating = False
            backlog = deque(replay)
            backlog.extend(self._pending)
            self._pending.clear()
            self._pending_bytes = 0
            try:
                while backlog:
                    await self._send_now(ws, backlog[0])
                    backlog.popleft()
            except ConnectionClosed:
                # This connection failed too: the pump sees the close and resumes again, and what
                # was not sent waits for that.
                for message in backlog:
                    self._queue_pending(message)
            self._connected.set()
        self.resume_count += 1
        self.last_resume_reason = reason
        log.info("session resumed (%s): %d message(s) replayed", reason, len(replay))
        for early_message in early:
            self._arrived(early_message)
        self.resumed.set()
        for callback in list(self.on_resume):
            try:
                callback(reason)
            except Exception:
                log.exception("on_resume callback failed")

    def _to_replay(self) -> list[dict[str, Any]]:
        if self._transparent:
            return [message for index, message, _ in self._log if index > self._last_consumed]
        return [message for _, message, _ in self._log]

    # ------------------------------------------------------------------ internals: messages

    def _arrived(self, message: LiveMessage) -> None:
        self._track(message)
        for listener in list(self._listeners):
            try:
                listener(message)
            except Exception:
                log.exception("live session listener failed")
        if len(self._queue) >= self.model.receive_queue_size:
            self._queue.popleft()
            self.dropped_messages += 1
            if self.dropped_messages == 1:
                log.warning("receive() is not being read: dropping the oldest messages")
        self._queue.append(message)
        self._queue_event.set()

    def _track(self, message: LiveMessage) -> None:
        """Follow the state resumption needs: open turns, handles, the consumed index, goAway."""
        content = message.server_content
        if message.tool_call or (content and any(
                k in content for k in ("modelTurn", "outputTranscription", "inputTranscription"))):
            self._begin_turn()
        if message.generation_complete or message.turn_complete:
            # The server saves its state once generation is done, so a handle after this covers the
            # turn, though its audio may still be arriving until turnComplete.
            self._generating = False
        if message.turn_complete:
            self._turn_open = False
            self._unproductive_resumes = 0
        update = message.resumption
        if update is not None:
            if update.resumable and update.handle:
                self._handle = update.handle
                if update.last_consumed_index is not None:
                    self._last_consumed = update.last_consumed_index
                    self._trim_log(lambda index: index <= update.last_consumed_index)  # type: ignore[operator]
                if not self._generating:
                    self._handle_fresh = True
                    if not self._transparent:
                        self._trim_log(lambda index: True)
            else:
                self._handle_fresh = False
        if message.go_away is not None and self._resumption:
            loop = asyncio.get_running_loop()
            margin = min(1.0, message.go_away / 2)
            self._switch_by = loop.time() + max(0.0, message.go_away - margin)

    def _begin_turn(self) -> None:
        self._turn_open = self._generating = True
        self._handle_fresh = False

    def _quiet(self) -> bool:
        """No turn under way and a handle that covers everything: a connection switch loses nothing."""
        return not self._turn_open and not self._generating and self._handle_fresh and not self._pending

    def _trim_log(self, drop: Callable[[int], bool]) -> None:
        while self._log and drop(self._log[0][0]):
            self._log_bytes -= self._log.popleft()[2]

    async def _send(self, message: dict[str, Any]) -> None:
        if self._error is not None:
            raise self._error
        if self._closing or self._finished:
            raise LiveError(1000, "the session is closed")
        async with self._send_lock:
            ws = self._ws
            if not self._connected.is_set() or ws is None:
                self._queue_pending(message)
                return
            try:
                await self._send_now(ws, message)
            except ConnectionClosed as exc:
                if not self._resumption:
                    code, reason = _close_of(exc)
                    raise LiveError(code, reason) from None
                self._queue_pending(message)  # the supervisor is about to resume

    def _queue_pending(self, message: dict[str, Any]) -> None:
        size = _size(message)
        self._pending.append(message)
        self._pending_bytes += size
        # Bounded: while reconnecting, old audio is dropped first (the conversation moved on).
        while self._pending_bytes > self.model.replay_limit_bytes and len(self._pending) > 1:
            victim = next((m for m in self._pending if wire.message_kind(m).startswith("realtimeInput.")),
                          self._pending[0])
            self._pending.remove(victim)
            self._pending_bytes -= _size(victim)

    async def _send_now(self, ws: ClientConnection, message: dict[str, Any]) -> None:
        text = wire.encode_json(message)
        await ws.send(text)
        self._index += 1
        if _opens_turn(message):
            self._begin_turn()
        if self._resumption and (self._transparent or wire.message_kind(message) in _CONVERSATIONAL):
            self._log.append((self._index, message, len(text)))
            self._log_bytes += len(text)
            while self._log_bytes > self.model.replay_limit_bytes and len(self._log) > 1:
                self._log_bytes -= self._log.popleft()[2]

    def _finish(self) -> None:
        if self._finished:
            return
        self._finished = True
        self._connected.set()
        self._queue.append(_END)
        self._queue_event.set()


def _opens_turn(message: Mapping[str, Any]) -> bool:
    """Whether sending this makes the server answer (so the state is not quiet until turnComplete)."""
    kind = wire.message_kind(message)
    if kind == "clientContent":
        return bool(message["clientContent"].get("turnComplete", True))
    return kind in ("toolResponse", "realtimeInput.text")


def _size(message: Mapping[str, Any]) -> int:
    inner: Any = next(iter(message.values()), {})
    blob = inner.get("audio") or inner.get("video") if isinstance(inner, Mapping) else None
    return len(blob["data"]) + 64 if isinstance(blob, Mapping) else len(wire.encode_json(message))


def _close_of(exc: ConnectionClosed) -> tuple[int, str]:
    if exc.rcvd is not None:
        return exc.rcvd.code, exc.rcvd.reason
    return 1006, "the connection dropped"


async def _close_quietly(ws: ClientConnection) -> None:
    try:
        await asyncio.wait_for(ws.close(), 5)
    except (TimeoutError, OSError, ConnectionClosed):
        pass

