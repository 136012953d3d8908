"""Durable state shared by server nodes: SQLite embedded by default, Redis for several nodes."""

from __future__ import annotations

from pathlib import Path

from .base import KEEP_PER_LINEAGE, Store, StoreError, digest

__all__ = ["KEEP_PER_LINEAGE", "Store", "StoreError", "digest", "open_store"]


async def open_store(backend: str, *, path: Path | None = None, url: str | None = None,
                     prefix: str = "openlive:", max_mb: float = 0) -> Store:
    """Open (and check) a store; a wrong path or an unreachable Redis fails here, at start-up."""
    if backend == "sqlite":
        if path is None:
            raise StoreError("the sqlite store needs a path")
        from .sqlite import SQLiteStore

        return await SQLiteStore(path, max_mb=max_mb).open()
    if backend == "redis":
        if not url:
            raise StoreError("the redis store needs a url")
        from .redis import RedisStore

        return await RedisStore(url, prefix=prefix).open()
    raise StoreError(f"unknown store backend {backend!r}: use sqlite or redis")
