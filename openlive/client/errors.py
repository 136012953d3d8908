"""The one exception the client raises for anything the server or the network did."""

from __future__ import annotations

# Close codes that say the request itself is wrong: reconnecting would only repeat them.
FATAL_CLOSE_CODES = frozenset({1002, 1003, 1007, 1008, 1009, 1010})


class LiveError(Exception):
    """The server closed the session with an error, or it could not be reached.

    `code` is the WebSocket close code (1007 invalid argument, 1008 policy / not found,
    1011 internal error, ...), the HTTP status when the handshake was refused, or 1006 when the
    connection failed or dropped without a close frame. `reason` is the server's text.
    """

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(f"{code} {reason}".strip())
        self.code = code
        self.reason = reason

    @property
    def fatal(self) -> bool:
        """True when retrying the same request cannot help (a bad setup, key or handle)."""
        return self.code in FATAL_CLOSE_CODES or 400 <= self.code < 500
