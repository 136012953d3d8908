"""uvicorn's WebSocket protocol, except that giving up on a client that stopped reading frees it.

uvicorn ends a connection with the transport's graceful `close()`, which first waits for the
write buffer to drain. A client that never reads again never drains it: after the close frame
(queued behind the unread data) or the keepalive timeout, the socket, its buffers and the TCP
zero-window probes would stay forever. Here a close to a client whose buffer is full, and the
keepalive timeout, abort the connection instead. A client that reads is closed gracefully, as
before.
"""

from __future__ import annotations

from typing import Any

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol


class AbortingWebSocketProtocol(WebSocketsSansIOProtocol):
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
