"""The embedded store: one SQLite file, written from one worker thread.

WAL mode with synchronous=NORMAL: a committed write survives the process being killed (even with
SIGKILL); only a power cut could lose the last commits. Several processes may share the file;
the atomic steps (leases, token uses) run in BEGIN IMMEDIATE transactions, so they stay atomic
across processes too.
"""

from __future__ import annotations

import asyncio
import json
import math
import sqlite3
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from .base import KEEP_PER_LINEAGE, TOKEN_BUCKET_S, Clock, StoreError, digest

T = TypeVar("T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS snapshots (
    handle TEXT PRIMARY KEY, lineage TEXT NOT NULL, data BLOB NOT NULL, written REAL NOT NULL, expires REAL NOT NULL);
CREATE INDEX IF NOT EXISTS snapshots_lineage ON snapshots (lineage, written);
CREATE TABLE IF NOT EXISTS leases (
    owner TEXT NOT NULL, lease TEXT NOT NULL, expires REAL NOT NULL, PRIMARY KEY (owner, lease));
CREATE TABLE IF NOT EXISTS token_counts (
    owner TEXT NOT NULL, bucket INTEGER NOT NULL, tokens INTEGER NOT NULL, PRIMARY KEY (owner, bucket));
CREATE TABLE IF NOT EXISTS auth_tokens (
    token TEXT PRIMARY KEY, record TEXT NOT NULL, uses_left INTEGER, expires REAL NOT NULL);
"""


class SQLiteStore:
    def __init__(self, path: Path, *, clock: Clock = time.time, max_mb: float = 0) -> None:
        self.path = Path(path)
        self.clock = clock
        # The database's cap (0: none). Past it a write fails as on a full disk ("database or disk
        # is full"): no handle is given for that snapshot, and the ones already given still work.
        self.max_mb = max_mb
        # One thread owns the connection: SQLite calls never block the event loop, and never overlap.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite-store")
        self._db: sqlite3.Connection | None = None

    async def open(self) -> "SQLiteStore":
        try:
            await self._run(self._connect)
        except StoreError:
            self._executor.shutdown(wait=False)
            raise
        return self

    def _connect(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # isolation_level=None: we say BEGIN ourselves. timeout is SQLite's busy_timeout: another process
        # holding the write lock makes us wait, not fail.
        db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=10.0)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.executescript(_SCHEMA)
        if self.max_mb > 0:
            page_size = db.execute("PRAGMA page_size").fetchone()[0]
            db.execute(f"PRAGMA max_page_count = {max(16, int(self.max_mb * (1 << 20) / page_size))}")
        self._db = db

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._executor, fn, *args)
        except (sqlite3.Error, OSError) as exc:  # OSError: the folder cannot be made
            raise StoreError(f"SQLite store {self.path}: {exc}") from exc

    def _transaction(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run `fn` in a write transaction taken up front, so read-then-write steps are atomic."""
        db = self._db
        assert db is not None, "store not opened"
        db.execute("BEGIN IMMEDIATE")
        try:
            result = fn(db)
            db.execute("COMMIT")  # inside: a COMMIT that fails (a full disk) must not leave it open
        except BaseException:
            # SQLite rolls back by itself on some errors (SQLITE_FULL: a full disk): a second
            # ROLLBACK would fail and hide the error that matters.
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        return result

    # ------------------------------------------------------------------ snapshots

    async def put_snapshot(self, handle: str, lineage: str, data: bytes, ttl_s: float) -> None:
        now = self.clock()

        def put(db: sqlite3.Connection) -> None:
            # What expired goes first: its pages make room for the new snapshot in a full database.
            db.execute("DELETE FROM snapshots WHERE expires <= ?", (now,))
            db.execute("INSERT OR REPLACE INTO snapshots VALUES (?, ?, ?, ?, ?)",
                       (digest(handle), lineage, data, now, now + ttl_s))
            db.execute("DELETE FROM snapshots WHERE lineage = ? AND handle NOT IN (SELECT handle FROM snapshots "
                       "WHERE lineage = ? ORDER BY written DESC, rowid DESC LIMIT ?)", (lineage, lineage, KEEP_PER_LINEAGE))

        await self._run(self._transaction, put)

    async def get_snapshot(self, handle: str) -> bytes | None:
        now = self.clock()

        def get() -> bytes | None:
            row = self._conn().execute("SELECT data FROM snapshots WHERE handle = ? AND expires > ?",
                                       (digest(handle), now)).fetchone()
            return bytes(row[0]) if row else None

        return await self._run(get)

    def _conn(self) -> sqlite3.Connection:
        assert self._db is not None, "store not opened"
        return self._db

    # ------------------------------------------------------------------ leases

    async def acquire_lease(self, owner: str, lease: str, limit: int, ttl_s: float) -> bool:
        now = self.clock()

        def acquire(db: sqlite3.Connection) -> bool:
            db.execute("DELETE FROM leases WHERE owner = ? AND expires <= ?", (owner, now))
            (held,) = db.execute("SELECT COUNT(*) FROM leases WHERE owner = ?", (owner,)).fetchone()
            if held >= limit:
                return False
            db.execute("INSERT OR REPLACE INTO leases VALUES (?, ?, ?)", (owner, lease, now + ttl_s))
            return True

        return await self._run(self._transaction, acquire)

    async def renew_leases(self, leases: Iterable[tuple[str, str]], ttl_s: float) -> None:
        expires = self.clock() + ttl_s
        rows = [(expires, owner, lease) for owner, lease in leases]

        def renew(db: sqlite3.Connection) -> None:
            db.executemany("UPDATE leases SET expires = ? WHERE owner = ? AND lease = ?", rows)

        await self._run(self._transaction, renew)

    async def release_lease(self, owner: str, lease: str) -> None:
        await self._run(self._transaction,
                        lambda db: db.execute("DELETE FROM leases WHERE owner = ? AND lease = ?", (owner, lease)))

    # ------------------------------------------------------------------ tokens per minute

    async def add_tokens(self, owner: str, tokens: int, window_s: float = 60.0) -> int:
        now = self.clock()

        def add(db: sqlite3.Connection) -> int:
            bucket = math.floor(now / TOKEN_BUCKET_S)
            db.execute("INSERT INTO token_counts VALUES (?, ?, ?) ON CONFLICT (owner, bucket) "
                       "DO UPDATE SET tokens = tokens + excluded.tokens", (owner, bucket, int(tokens)))
            oldest = bucket - math.ceil(window_s / TOKEN_BUCKET_S)
            db.execute("DELETE FROM token_counts WHERE owner = ? AND bucket <= ?", (owner, oldest))
            return _sum_window(db, owner, now, window_s)

        return await self._run(self._transaction, add)

    async def tokens_in_window(self, owner: str, window_s: float = 60.0) -> int:
        now = self.clock()
        return await self._run(lambda: _sum_window(self._conn(), owner, now, window_s))

    # ------------------------------------------------------------------ ephemeral tokens

    async def put_auth_token(self, token: str, record: dict[str, Any], uses: int, expires_at: float) -> None:
        now = self.clock()

        def put(db: sqlite3.Connection) -> None:
            db.execute("INSERT OR REPLACE INTO auth_tokens VALUES (?, ?, ?, ?)",
                       (digest(token), json.dumps(record), uses if uses > 0 else None, expires_at))
            db.execute("DELETE FROM auth_tokens WHERE expires <= ?", (now,))

        await self._run(self._transaction, put)

    async def get_auth_token(self, token: str) -> dict[str, Any] | None:
        now = self.clock()

        def get() -> dict[str, Any] | None:
            row = self._conn().execute("SELECT record FROM auth_tokens WHERE token = ? AND expires > ?",
                                       (digest(token), now)).fetchone()
            return json.loads(row[0]) if row else None

        return await self._run(get)

    async def use_auth_token(self, token: str) -> bool:
        now = self.clock()

        def use(db: sqlite3.Connection) -> bool:
            row = db.execute("SELECT uses_left FROM auth_tokens WHERE token = ? AND expires > ?",
                             (digest(token), now)).fetchone()
            if row is None:
                return False
            if row[0] is None:
                return True  # unlimited
            if row[0] <= 0:
                return False
            db.execute("UPDATE auth_tokens SET uses_left = uses_left - 1 WHERE token = ?", (digest(token),))
            return True

        return await self._run(self._transaction, use)

    async def aclose(self) -> None:
        db, self._db = self._db, None
        if db is not None:
            await asyncio.get_running_loop().run_in_executor(self._executor, db.close)
        self._executor.shutdown(wait=False)


def _sum_window(db: sqlite3.Connection, owner: str, now: float, window_s: float) -> int:
    oldest = math.floor(now / TOKEN_BUCKET_S) - math.ceil(window_s / TOKEN_BUCKET_S)
    (total,) = db.execute("SELECT COALESCE(SUM(tokens), 0) FROM token_counts WHERE owner = ? AND bucket > ?",
                          (owner, oldest)).fetchone()
    return int(total)
