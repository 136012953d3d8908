"""API keys: where clients put them, and checking them without keeping them in memory.

Keys are kept as SHA-256 digests and compared in constant time, and every credential a client
presents is handed to the log's redaction, so a log line never shows a usable key (nor a wrong
one, which is often a real key of something else).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Mapping

from ..protocol.errors import CloseCode
from ..redaction import remember_secret


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8")).digest()


def credential_from(headers: Mapping[str, str], query: Mapping[str, str]) -> str | None:
    """The key a client sent: x-goog-api-key (Python SDK), ?key= (JS SDK), or a bearer token.

    Whatever it is, right or wrong, the log redacts it from now on.
    """
    credential = _credential(headers, query)
    remember_secret(credential)
    return credential


def _credential(headers: Mapping[str, str], query: Mapping[str, str]) -> str | None:
    key = headers.get("x-goog-api-key") or query.get("key")
    if key:
        return key
    auth = headers.get("authorization", "")
    scheme, _, value = auth.partition(" ")
    if scheme.lower() in ("bearer", "token") and value.strip():
        return value.strip()
    return query.get("access_token") or None


def owner_of(credential: str | None) -> str:
    """Whose session this is, for limits and resumption: a digest, never the key itself."""
    return hashlib.sha256(("key:" + (credential or "")).encode("utf-8")).hexdigest()[:32]


class AuthError(Exception):
    def __init__(self, close_code: int, http_status: int, status: str, message: str) -> None:
        super().__init__(message)
        self.close_code = close_code
        self.http_status = http_status
        self.status = status
        self.message = message


class KeyChecker:
    def __init__(self, keys: Iterable[str]) -> None:
        self._digests = [_digest(k) for k in keys]

    @property
    def open(self) -> bool:
        """No keys configured: any key is accepted (only allowed on loopback)."""
        return not self._digests

    def check(self, credential: str | None) -> None:
        if self.open:
            return
        if not credential:
            raise AuthError(CloseCode.POLICY, 403, "PERMISSION_DENIED",
                            "Method doesn't allow unregistered callers. Please use an API key.")
        digest = _digest(credential)
        # Compare against every key so timing says nothing about which one nearly matched.
        matched = False
        for known in self._digests:
            matched |= hmac.compare_digest(digest, known)
        if not matched:
            raise AuthError(CloseCode.INVALID_ARGUMENT, 400, "INVALID_ARGUMENT",
                            "API key not valid. Please pass a valid API key.")
