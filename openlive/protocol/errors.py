"""Errors a client can act on, carried as WebSocket close codes the way the real service sends them.

The Live API reports every error by closing the socket: 1007 for a request it cannot accept,
1008 for something not found or not allowed, 1011 for its own failures. The close reason is at
most 123 bytes on the wire (RFC 6455 §5.5), so reasons are cut to fit without breaking UTF-8, and
must be valid UTF-8 at all: a reason that quotes a client's string (a model name holding a lone
surrogate) has that replaced, or the close itself would fail and the client would see 1011.
"""

from __future__ import annotations

from enum import IntEnum

MAX_REASON_BYTES = 123


class CloseCode(IntEnum):
    NORMAL = 1000
    GOING_AWAY = 1001
    INVALID_ARGUMENT = 1007  # "invalid frame payload data": bad JSON, wrong types, bad values
    POLICY = 1008  # not found, not permitted, bad key
    MESSAGE_TOO_BIG = 1009
    INTERNAL = 1011
    TRY_AGAIN_LATER = 1013


def fit_reason(reason: str, limit: int = MAX_REASON_BYTES) -> str:
    """Make `reason` sendable: lone surrogates replaced, cut to `limit` UTF-8 bytes on a character boundary."""
    raw = str(reason).encode("utf-8", errors="replace")  # a lone surrogate becomes "?"
    return raw[:limit].decode("utf-8", errors="ignore")


def fit_path(head: str, path: str, tail: str, limit: int = MAX_REASON_BYTES) -> str:
    """head + path + tail, the path cut from the left ("…detection.silence_duration_ms") to fit.

    A field's path can take most of the 123 bytes; its last names and the problem are what say most.
    """
    room = limit - len(f"{head}{tail}".encode("utf-8", errors="replace"))
    raw = path.encode("utf-8", errors="replace")
    if len(raw) > room >= 12:
        path = "…" + raw[len(raw) - (room - 3):].decode("utf-8", errors="ignore")
    return f"{head}{path}{tail}"


class ProtocolError(Exception):
    """Ends the session with a close code and a short reason for the client."""

    def __init__(self, code: int, reason: str) -> None:
        self.code = int(code)
        self.reason = fit_reason(reason)
        # The fitted reason in str() too: a log line with a lone surrogate in it is a logging error.
        super().__init__(f"{self.code} {self.reason}")


def invalid_argument(reason: str = "Request contains an invalid argument.") -> ProtocolError:
    return ProtocolError(CloseCode.INVALID_ARGUMENT, reason)


def model_not_found(model: str, api_version: str = "v1beta") -> ProtocolError:
    # The real service's wording, which clients and their users already recognise.
    return ProtocolError(
        CloseCode.POLICY,
        f"{model} is not found for API version {api_version}, or is not supported for "
        "bidiGenerateContent. Call ListModels to see the list of available models.",
    )


def internal_error(reason: str = "Internal error occurred.") -> ProtocolError:
    return ProtocolError(CloseCode.INTERNAL, reason)


def unavailable() -> ProtocolError:
    return ProtocolError(CloseCode.INTERNAL, "The service is currently unavailable.")
