"""Errors a client can act on, carried as WebSocket close codes the way the real service sends them.

The Live API reports every error by closing the socket: 1007 for a request it cannot accept,
1008 for something not found or not allowed, 1011 for its own failures. The close reason is at
most 123 bytes on the wire (RFC 6455 §5.5), so reasons are cut to fit without breaking UTF-8.
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
    """Cut `reason` to at most `limit` UTF-8 bytes, on a character boundary."""
    raw = reason.encode("utf-8")
    if len(raw) <= limit:
        return reason
    return raw[:limit].decode("utf-8", errors="ignore")


class ProtocolError(Exception):
    """Ends the session with a close code and a short reason for the client."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(f"{code} {reason}")
        self.code = int(code)
        self.reason = fit_reason(reason)


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
