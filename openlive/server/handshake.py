"""A deadline for a connection's HTTP request head (the WebSocket upgrade included).

uvicorn times out a connection only between requests (keep-alive), never while the first
request's head is still arriving: a client that sends a header line every few seconds
("slow-loris") holds a connection, and its memory, forever; a few thousand of them hold the
server. Here every connection must have sent a whole request head within `head_timeout_s` of
connecting (after the TLS handshake, which asyncio bounds itself), or it is closed. Once the
head is in, the request (or the WebSocket it upgrades to, with its own deadline for `setup`) is
no longer this module's business.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

log = logging.getLogger(__name__)


def deadline_protocol(head_timeout_s: float) -> type[H11Protocol]:
    """uvicorn's HTTP/1.1 protocol, with a deadline for the first request head."""

    class HeadDeadlineProtocol(H11Protocol):
        _head_deadline: asyncio.TimerHandle | None = None

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._head_deadline = self.loop.call_later(head_timeout_s, self._head_too_slow)

        def handle_events(self) -> None:
            super().handle_events()
            # h11 leaves IDLE once a whole request head has been read (a WebSocket upgrade too).
            if self._head_deadline is not None and self.conn.their_state is not h11.IDLE:
                self._head_deadline.cancel()
                self._head_deadline = None

        def connection_lost(self, exc: Exception | None) -> None:
            if self._head_deadline is not None:
                self._head_deadline.cancel()
                self._head_deadline = None
            super().connection_lost(exc)

        def _head_too_slow(self) -> None:
            self._head_deadline = None
            transport: Any = self.transport
            if transport.is_closing() or transport.get_protocol() is not self:
                return  # gone, or upgraded to a WebSocket (the upgrade cancels nothing here)
            log.info("closed a connection that sent no whole request in %.0f s", head_timeout_s)
            transport.close()

    return HeadDeadlineProtocol
