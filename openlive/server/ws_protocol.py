"""uvicorn's WebSocket protocol with two faults of its own fixed: bad UTF-8, and clients that stop reading.

- A text frame that is not valid UTF-8 made uvicorn log a traceback ("Invalid UTF-8 sequence
  received from client") and close with 1007 and no reason. Here it is refused before it
  reaches the app: 1007 with a reason, as the real service says what was wrong, and no traceback.
- uvicorn ends a connection with the transport's graceful `close()`, which first waits for the
  write buffer to drain. A client that never reads again never drains it: after the close frame
  (queued behind the unread data) or the keepalive timeout, the socket, its buffers and the TCP
  zero-window probes would stay forever. Here a close to a client whose buffer is full, and the
  keepalive timeout, abort the connection instead. A client that reads is closed gracefully.
"""

from __future__ import annotations

from typing import Any

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

BAD_UTF8 = "Request contains an invalid argument: a text frame is not valid UTF-8."


class GuardedWebSocketProtocol(WebSocketsSansIOProtocol):
    def send_receive_event_to_app(self) -> None:
        if self.curr_msg_data_type == "text" and not self.close_sent:
            try:
                b"".join(self.frames).decode()
            except UnicodeDecodeError:
                self._refuse_bad_utf8()
                return
        super().send_receive_event_to_app()

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

    async def send(self, message: Any) -> None:
        if message["type"] == "websocket.close" and not self.writable.is_set() and not self.disconnected:
            # The send below would wait for room in the buffer: for a client that stopped
            # reading, forever. Abort: connection_lost wakes it, and it reports the disconnect.
            self.transport.abort()
        await super().send(message)

    def keepalive_timeout(self) -> None:
        super().keepalive_timeout()
        if self.transport.get_write_buffer_size():
            self.transport.abort()  # the close above would wait for a client that is not reading
