"""The state that outlives a connection and is shared by server nodes.

Three kinds: resumption snapshots, per-key quota counters (session leases, tokens per minute) and
ephemeral auth tokens. Secrets (handles, tokens) are only ever stored as their SHA-256 digests,
so a copy of the store gives no way into anyone's session.

Two backends behave alike: SQLite (one file, the embedded default) and Redis (several nodes).
Expiry is judged by the caller's clock (`time.time()` unless a test injects one), so every node
and every backend agrees on it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from typing import Any, Protocol

KEEP_PER_LINEAGE = 4  # snapshots kept per conversation: a client may miss the newest update or two
TOKEN_BUCKET_S = 1.0  # tokens-per-minute counts slide in one-second steps

Clock = Callable[[], float]


class StoreError(RuntimeError):
    """The store cannot be reached or used; the message says which and why."""


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


class Store(Protocol):
    async def put_snapshot(self, handle: str, lineage: str, data: bytes, ttl_s: float) -> None:
        """Durable when it returns; keeps the newest KEEP_PER_LINEAGE snapshots of the lineage."""

    async def get_snapshot(self, handle: str) -> bytes | None:
        """The snapshot, or None when the handle is unknown or expired."""

    async def acquire_lease(self, owner: str, lease: str, limit: int, ttl_s: float) -> bool:
        """Atomically add `lease` if `owner` holds fewer than `limit` live leases."""

    async def renew_leases(self, leases: Iterable[tuple[str, str]], ttl_s: float) -> None:
        """Heartbeat (owner, lease) pairs; leases not renewed lapse after their ttl."""

    async def release_lease(self, owner: str, lease: str) -> None: ...

    async def add_tokens(self, owner: str, tokens: int, window_s: float = 60.0) -> int:
        """Count `tokens` now; return the owner's total over the trailing window, these included."""

    async def tokens_in_window(self, owner: str, window_s: float = 60.0) -> int: ...

    async def put_auth_token(self, token: str, record: dict[str, Any], uses: int, expires_at: float) -> None:
        """`uses` 0: unlimited. After `expires_at` (unix time) the token is gone."""

    async def get_auth_token(self, token: str) -> dict[str, Any] | None: ...

    async def use_auth_token(self, token: str) -> bool:
        """Atomically consume one use; False when none is left, or the token is unknown or expired."""

    async def aclose(self) -> None: ...
