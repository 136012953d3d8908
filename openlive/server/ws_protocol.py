"""uvicorn's WebSocket protocol with its faults fixed: bad UTF-8, clients that stop reading, and floods.

- A text frame that is not valid UTF-8 made uvicorn log a traceback ("Invalid UTF-8 sequence
  received from client") and close with 1007 and no reason. Here it is refused before it
  reaches the app: 1007 with a reason, as the real service says what was wrong, and no traceback.
- uvicorn ends a connection with the transport's graceful `close()`, which first waits for the
  write buffer to drain. A client that never reads again never drains it: after the close frame
  (queued behind the unread data) or the keepalive timeout, the socket, its buffers and the TCP
  zero-window probes would stay forever. Here a close to a client whose buffer is full, and the
  keepalive timeout, abort the connection instead. A client that reads is closed gracefully.
- Backpressure. uvicorn parses everything one socket read brings (asyncio reads up to 256 KiB;
  over TLS, up to 256 KiB more waits to be decrypted) into messages for the app at once, and only
  then stops reading until the app has taken them all. 256 KiB of 8-byte frames is 32,000
  messages: ~10 MB queued for one connection, and one callback parsing them all while every
  other session waits. Here the bytes read are parsed a few KiB at a time, only while fewer than
  `QUEUE_HIGH` messages (and `QUEUE_BYTES`) wait for the app: the rest of the read waits as
  bytes, and the socket is not read again until the app has caught up. A client sending faster
  than its session handles frames is slowed by TCP flow control (its send buffer fills, its
  writes wait), never closed for its speed; nothing it sent is dropped. What the protocol holds
  for one connection is at most one read of raw bytes, `QUEUE_HIGH` messages or `QUEUE_BYTES`
  (whichever comes first) plus one piece's worth (`PIECE_BYTES`) or one message (at most
  `max_frame_bytes`, which the app would hold anyway).
- The pongs a client owes sit behind its frames that we have not read yet. While we hold its
  data unread (backpressure), or it has sent anything since our ping, it is alive: the keepalive
  timeout waits on rather than closing a client whose only fault is sending faster than we read.
- Pongs to a client's pings are written without waiting for room (uvicorn answers each ping at
  once): a client flooding pings without reading would grow our write buffer without end. Its
  frames are not parsed while the write buffer holds more than `MAX_UNSENT_BYTES`.
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING, Any

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

if TYPE_CHECKING:
    from uvicorn._types import ASGIReceiveEvent

BAD_UTF8 = "Request contains an invalid argument: a text frame is not valid UTF-8."

# Messages parsed for the app and not taken yet: parsing stops at QUEUE_HIGH, and goes on (and
# then reading) once the app has taken them down to QUEUE_LOW. The app takes one per frame it
# handles, so a few are enough to keep it busy.
QUEUE_HIGH = 32
QUEUE_LOW = 8
QUEUE_BYTES = 1 << 20  # or once their payloads add up to this: one large frame (video, a long turn) is enough
# Bytes handed to the frame parser at a time: at most ~680 messages from one piece (6-byte empty
# frames), ~30 of a small audio chunk each.
PIECE_BYTES = 4096
# Past this in the write buffer (a frame the app sent is < 1 MiB, and app sends wait for the
# 64 KiB high-water mark), only pongs to a ping flood can be growing it.
MAX_UNSENT_BYTES = 2 << 20


class GuardedWebSocketProtocol(WebSocketsSansIOProtocol):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._unparsed = b""  # read from the socket, not yet parsed: at most one read
        self._parsed_to = 0
        self._heard_at = 0.0  # loop time of the client's latest bytes
        self._sizes: deque[int] = deque()  # payload bytes of each message queued for the app
        self._queued_bytes = 0

    # ------------------------------------------------------------------ reading, with backpressure

    def data_received(self, data: bytes) -> None:
        self._heard_at = self.loop.time()
        if self._parsed_to < len(self._unparsed):  # only while closing: reading goes on after close_sent
            self._unparsed = self._unparsed[self._parsed_to:] + data
        else:
            self._unparsed = data
        self._parsed_to = 0
        self._parse()

    def _parse(self, *, everything: bool = False) -> None:
        """Parse what was read, a piece at a time, while the app has room; the rest waits, unread."""
        while self._parsed_to < len(self._unparsed):
            if not (everything or self.close_sent) and self._full():
                self._hold()
                return
            piece = self._unparsed[self._parsed_to:self._parsed_to + PIECE_BYTES]
            self._parsed_to += len(piece)
            super().data_received(piece)
            if self.transport.is_closing():  # a parser error, a refused handshake, the closing handshake done
                break
        self._unparsed, self._parsed_to = b"", 0

    def _full(self) -> bool:
        return (self.queue.qsize() >= QUEUE_HIGH or self._queued_bytes >= QUEUE_BYTES
                or self.transport.get_write_buffer_size() > MAX_UNSENT_BYTES)

    def _room(self) -> bool:
        return self.queue.qsize() <= QUEUE_LOW and self._queued_bytes <= QUEUE_BYTES // 2

    def _hold(self) -> None:
        if not self.read_paused:
            self.read_paused = True
            self.transport.pause_reading()

    def _read_on(self) -> None:
        """Parse on, and read the socket again, once the app has taken the queue down."""
        if not self._room():
            return
        self._parse()
        if (self.read_paused and self._parsed_to >= len(self._unparsed) and self._room()
                and not self.transport.is_closing()):
            self.read_paused = False
            self.transport.resume_reading()

    async def receive(self) -> "ASGIReceiveEvent":
        message = await self.queue.get()
        if message["type"] == "websocket.receive" and self._sizes:
            self._queued_bytes -= self._sizes.popleft()
        self._read_on()
        return message

    def resume_writing(self) -> None:
        super().resume_writing()
        self._read_on()  # parsing may have waited for pongs to drain

    def eof_received(self) -> None:
        self._parse(everything=True)  # the client sent all it will: the app gets it before the disconnect

    def connection_lost(self, exc: Exception | None) -> None:
        self._unparsed, self._parsed_to = b"", 0
        super().connection_lost(exc)

    def keepalive_timeout(self) -> None:
        if (not self.close_sent and self.writable.is_set() and self.ping_timeout is not None
                and (self.read_paused or self._heard_at > self.ping_sent_at)):
            # Its pong is behind frames we have not read yet (we stopped reading), or it has sent
            # since the ping: a client that is there, only faster than we read. Wait on. (One
            # that does not read what we write is not waited for: it is not reading our pings.)
            self.pong_timer = self.loop.call_later(self.ping_timeout, self.keepalive_timeout)
            return
        super().keepalive_timeout()
        if self.transport.get_write_buffer_size():
            self.transport.abort()  # the close above would wait for a client that is not reading

    # ------------------------------------------------------------------ bad UTF-8

    def send_receive_event_to_app(self) -> None:
        if self.curr_msg_data_type == "text" and not self.close_sent:
            try:
                b"".join(self.frames).decode()
            except UnicodeDecodeError:
                self._refuse_bad_utf8()
                return
        size, queued = sum(map(len, self.frames)), self.queue.qsize()
        super().send_receive_event_to_app()
        if self.queue.qsize() > queued:  # queued, not dropped after our close
            self._sizes.append(size)
            self._queued_bytes += size

    def _refuse_bad_utf8(self) -> None:
        """Close 1007 as the app itself would: the close frame, then a closing handshake.

        The transport stays open for the client's close reply (or close_timeout): closing it at
        once with the client's next frames unread would reset the connection, and the client
        would lose the close frame and its reason."""
        self.frames = []
        self.conn.send_close(1007, BAD_UTF8)
        self.queue.put_nowait({"type": "websocket.disconnect", "code": 1007, "reason": BAD_UTF8})
        self.transport.write(b"".join(self.conn.data_to_send()))
        self.close_sent = True
        if self.read_paused:
            self.read_paused = False
            self.transport.resume_reading()
        self.close_timer = self.loop.call_later(self.close_timeout, self.transport.close)

    # ------------------------------------------------------------------ clients that stop reading

    async def send(self, message: Any) -> None:
        if message["type"] == "websocket.close" and not self.writable.is_set() and not self.disconnected:
            # The send below would wait for room in the buffer: for a client that stopped
            # reading, forever. Abort: connection_lost wakes it, and it reports the disconnect.
            self.transport.abort()
        await super().send(message)
