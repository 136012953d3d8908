"""The state store, the same behaviour from both backends: SQLite in a temp dir, and a real Redis.

Two store objects on one file (or one Redis) stand for two server nodes.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import pytest

from openlive.store import KEEP_PER_LINEAGE, StoreError, open_store
from openlive.store.redis import RedisStore
from openlive.store.sqlite import SQLiteStore
from tests.support.redis_server import redis_server, redis_url_fixture


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


redis_url = redis_url_fixture()  # one server for the module; each test gets its own key prefix


@pytest.fixture(params=["sqlite", "redis"])
async def nodes(request, tmp_path):
    """Two stores sharing one backend (two nodes), and the clock they both read."""
    clock = Clock()
    if request.param == "sqlite":
        stores = [await SQLiteStore(tmp_path / "state.sqlite3", clock=clock).open() for _ in range(2)]
    else:
        url = request.getfixturevalue("redis_url")
        prefix = f"t{uuid.uuid4().hex}:"  # a fresh key space per test
        stores = [await RedisStore(url, prefix=prefix, clock=clock).open() for _ in range(2)]
    yield stores, clock
    for store in stores:
        await store.aclose()


async def test_snapshots_round_trip_expire_and_are_shared(nodes):
    (a, b), clock = nodes
    await a.put_snapshot("handle-1", "lin", b"\x00state\xff", ttl_s=60)
    assert await b.get_snapshot("handle-1") == b"\x00state\xff"  # the other node sees it
    assert await b.get_snapshot("handle-2") is None
    clock.now += 61
    assert await a.get_snapshot("handle-1") is None


async def test_only_the_newest_snapshots_of_a_lineage_are_kept(nodes):
    (a, _), clock = nodes
    for i in range(KEEP_PER_LINEAGE + 3):
        clock.now += 1
        await a.put_snapshot(f"h{i}", "lin", f"s{i}".encode(), ttl_s=600)
    await a.put_snapshot("other", "other-lineage", b"x", ttl_s=600)
    kept = [i for i in range(KEEP_PER_LINEAGE + 3) if await a.get_snapshot(f"h{i}") is not None]
    assert kept == list(range(3, KEEP_PER_LINEAGE + 3))
    assert await a.get_snapshot("other") == b"x"


async def test_secrets_are_stored_only_as_digests(nodes, tmp_path):
    (a, _), _ = nodes
    await a.put_snapshot("secret-handle-123", "lin", b"data", ttl_s=60)
    await a.put_auth_token("auth_tokens/secret-token-456", {"owner": "o"}, 1, a.clock() + 60)
    if isinstance(a, SQLiteStore):
        raw = b"".join(p.read_bytes() for p in tmp_path.glob("state.sqlite3*"))
    else:
        raw = b" ".join(await a._redis.keys("*"))
    assert b"secret-handle-123" not in raw and b"secret-token-456" not in raw


async def test_leases_limit_release_and_lapse(nodes):
    (a, b), clock = nodes
    assert await a.acquire_lease("key", "l1", 2, ttl_s=30)
    assert await b.acquire_lease("key", "l2", 2, ttl_s=30)
    assert not await b.acquire_lease("key", "l3", 2, ttl_s=30)  # the limit counts both nodes
    assert await b.acquire_lease("other-key", "l4", 2, ttl_s=30)  # per key
    await a.release_lease("key", "l1")
    assert await b.acquire_lease("key", "l3", 2, ttl_s=30)
    # Node A renews its leases; node B dies: its leases lapse, A's do not.
    clock.now += 20
    await a.renew_leases([("key", "l3")], ttl_s=30)
    clock.now += 20
    assert await a.acquire_lease("key", "l5", 2, ttl_s=30)  # l2 lapsed
    assert not await a.acquire_lease("key", "l6", 2, ttl_s=30)  # l3 (renewed) and l5 hold


async def test_concurrent_acquires_across_nodes_grant_exactly_the_limit(nodes):
    (a, b), _ = nodes
    results = await asyncio.gather(*(s.acquire_lease("key", f"l{i}", 5, ttl_s=30)
                                     for i, s in enumerate([a, b] * 10)))
    assert sum(results) == 5


async def test_tokens_per_minute_slide(nodes):
    (a, b), clock = nodes
    assert await a.add_tokens("key", 100) == 100
    clock.now += 30
    assert await b.add_tokens("key", 50) == 150
    assert await a.tokens_in_window("other") == 0
    clock.now += 31  # the first 100 are now more than a minute old
    assert await b.tokens_in_window("key") == 50
    clock.now += 60
    assert await a.tokens_in_window("key") == 0


async def test_auth_token_uses_unlimited_and_expiry(nodes):
    (a, b), clock = nodes
    await a.put_auth_token("auth_tokens/two", {"owner": "o", "n": 1}, 2, clock.now + 100)
    await a.put_auth_token("auth_tokens/free", {"owner": "o"}, 0, clock.now + 100)
    assert await b.get_auth_token("auth_tokens/two") == {"owner": "o", "n": 1}
    assert [await b.use_auth_token("auth_tokens/two") for _ in range(3)] == [True, True, False]
    assert all([await a.use_auth_token("auth_tokens/free") for _ in range(5)])
    assert not await a.use_auth_token("auth_tokens/unknown")
    clock.now += 101
    assert await a.get_auth_token("auth_tokens/free") is None
    assert not await a.use_auth_token("auth_tokens/free")


async def test_concurrent_token_uses_grant_exactly_its_uses(nodes):
    (a, b), clock = nodes
    await a.put_auth_token("auth_tokens/three", {"owner": "o"}, 3, clock.now + 100)
    results = await asyncio.gather(*(s.use_auth_token("auth_tokens/three") for s in [a, b] * 6))
    assert sum(results) == 3


async def test_bad_configuration_fails_at_open(tmp_path):
    with pytest.raises(StoreError, match="Redis store"):
        await open_store("redis", url="redis://127.0.0.1:1/0")  # nothing listens there
    with pytest.raises(StoreError, match="Redis store"):
        await open_store("redis", url="http://127.0.0.1:6379")
    with pytest.raises(StoreError, match="SQLite store"):
        await open_store("sqlite", path=tmp_path)  # a folder, not a file
    (tmp_path / "file").write_text("")
    with pytest.raises(StoreError, match="SQLite store"):
        await open_store("sqlite", path=tmp_path / "file" / "state.sqlite3")  # its folder cannot be made
    with pytest.raises(StoreError, match="needs a path"):
        await open_store("sqlite")
    with pytest.raises(StoreError, match="unknown store backend"):
        await open_store("etcd")


async def test_redis_going_down_is_a_store_error():
    with redis_server() as url:
        store = await open_store("redis", url=url)
    try:
        with pytest.raises(StoreError, match="Redis store"):
            await store.acquire_lease("key", "l1", 1, ttl_s=30)
    finally:
        await store.aclose()


async def test_a_short_lived_write_does_not_shorten_a_redis_key(redis_url):
    """Redis' own expiry is per key: the key of an owner's leases must outlive its longest lease."""
    store = await RedisStore(redis_url, prefix=f"t{uuid.uuid4().hex}:").open()
    try:
        await store.acquire_lease("key", "long", 3, ttl_s=3600)
        await store.acquire_lease("key", "short", 3, ttl_s=1)
        await store.renew_leases([("key", "short")], ttl_s=1)
        assert await store._redis.pttl(store._key("leases", "key")) > 3_000_000
    finally:
        await store.aclose()


def test_a_snapshot_survives_sigkill_right_after_it_was_written(tmp_path: Path):
    path = tmp_path / "state.sqlite3"
    child = textwrap.dedent(f"""
        import asyncio, os, signal
        from openlive.store import open_store

        async def main():
            store = await open_store("sqlite", path={str(path)!r})
            await store.put_snapshot("h", "lin", b"promised", ttl_s=600)
            os.kill(os.getpid(), signal.SIGKILL)  # no close, no flush: the write must already be durable

        asyncio.run(main())
    """)
    done = subprocess.run([sys.executable, "-c", child], cwd=Path(__file__).resolve().parents[2])
    assert done.returncode == -9

    async def read():
        store = await open_store("sqlite", path=path)
        try:
            return await store.get_snapshot("h")
        finally:
            await store.aclose()

    assert asyncio.run(read()) == b"promised"
