"""The shared store: Redis, for several openlive nodes behind one load balancer.

Each read-then-write step is one Lua script, so it is atomic however many nodes run it. Expiry
is judged by the caller's clock, passed to the scripts, as in the SQLite store; Redis' own key
expiry only collects the garbage. How durable a snapshot is depends on the Redis server's
persistence settings (appendonly yes for the strongest promise); a node dying loses nothing.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterable
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from .base import KEEP_PER_LINEAGE, TOKEN_BUCKET_S, Clock, StoreError, digest

# KEYS: snapshot, lineage index. ARGV: data, expires, now, keep, ttl_ms.
_PUT_SNAPSHOT = """
redis.call('HSET', KEYS[1], 'data', ARGV[1], 'expires', ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[5])
redis.call('ZADD', KEYS[2], ARGV[3], KEYS[1])
local old = redis.call('ZRANGE', KEYS[2], 0, -(tonumber(ARGV[4]) + 1))
for _, key in ipairs(old) do redis.call('DEL', key); redis.call('ZREM', KEYS[2], key) end
redis.call('PEXPIRE', KEYS[2], ARGV[5])
return #old
"""

# KEYS: the owner's leases. ARGV: now, limit, expires, lease, ttl_ms.
_ACQUIRE = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then return 0 end
redis.call('ZADD', KEYS[1], ARGV[3], ARGV[4])
redis.call('PEXPIRE', KEYS[1], ARGV[5])
return 1
"""

# KEYS: the owner's counts. ARGV: bucket, tokens, oldest bucket kept (exclusive), ttl_s.
_ADD_TOKENS = """
if tonumber(ARGV[2]) ~= 0 then redis.call('HINCRBY', KEYS[1], ARGV[1], ARGV[2]) end
redis.call('EXPIRE', KEYS[1], ARGV[4])
local all = redis.call('HGETALL', KEYS[1])
local total = 0
for i = 1, #all, 2 do
  if tonumber(all[i]) > tonumber(ARGV[3]) then total = total + tonumber(all[i + 1])
  else redis.call('HDEL', KEYS[1], all[i]) end
end
return total
"""

# KEYS: the token. ARGV: now. Returns 1 if a use was granted.
_USE_TOKEN = """
local found = redis.call('HMGET', KEYS[1], 'uses', 'expires')
if not found[1] or tonumber(found[2]) <= tonumber(ARGV[1]) then return 0 end
local left = tonumber(found[1])
if left < 0 then return 1 end
if left == 0 then return 0 end
redis.call('HINCRBY', KEYS[1], 'uses', -1)
return 1
"""


class RedisStore:
    def __init__(self, url: str, *, prefix: str = "openlive:", clock: Clock = time.time) -> None:
        self.url = url
        self.prefix = prefix
        self.clock = clock
        self._redis = aioredis.Redis.from_url(url, socket_connect_timeout=5, socket_timeout=10)
        self._put_snapshot = self._redis.register_script(_PUT_SNAPSHOT)
        self._acquire = self._redis.register_script(_ACQUIRE)
        self._add_tokens = self._redis.register_script(_ADD_TOKENS)
        self._use_token = self._redis.register_script(_USE_TOKEN)

    async def open(self) -> "RedisStore":
        try:
            await self._redis.ping()
        except (RedisError, OSError) as exc:
            await self._redis.aclose()
            raise StoreError(f"Redis store {self.url}: {exc}") from exc
        return self

    def _key(self, kind: str, name: str) -> str:
        return f"{self.prefix}{kind}:{name}"

    def _error(self, exc: Exception) -> StoreError:
        return StoreError(f"Redis store {self.url}: {exc}")

    async def put_snapshot(self, handle: str, lineage: str, data: bytes, ttl_s: float) -> None:
        now = self.clock()
        try:
            await self._put_snapshot(keys=[self._key("snapshot", digest(handle)), self._key("lineage", lineage)],
                                     args=[data, now + ttl_s, now, KEEP_PER_LINEAGE, _ms(ttl_s)])
        except RedisError as exc:
            raise self._error(exc) from exc

    async def get_snapshot(self, handle: str) -> bytes | None:
        try:
            data, expires = await self._redis.hmget(self._key("snapshot", digest(handle)), ["data", "expires"])
        except RedisError as exc:
            raise self._error(exc) from exc
        if data is None or expires is None or float(expires) <= self.clock():
            return None
        return bytes(data)

    async def acquire_lease(self, owner: str, lease: str, limit: int, ttl_s: float) -> bool:
        now = self.clock()
        try:
            granted = await self._acquire(keys=[self._key("leases", owner)],
                                          args=[now, limit, now + ttl_s, lease, _ms(ttl_s)])
        except RedisError as exc:
            raise self._error(exc) from exc
        return bool(granted)

    async def renew_leases(self, leases: Iterable[tuple[str, str]], ttl_s: float) -> None:
        expires = self.clock() + ttl_s
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                for owner, lease in leases:
                    pipe.zadd(self._key("leases", owner), {lease: expires}, xx=True)  # only leases still held
                    pipe.pexpire(self._key("leases", owner), _ms(ttl_s))
                await pipe.execute()
        except RedisError as exc:
            raise self._error(exc) from exc

    async def release_lease(self, owner: str, lease: str) -> None:
        try:
            await self._redis.zrem(self._key("leases", owner), lease)
        except RedisError as exc:
            raise self._error(exc) from exc

    async def add_tokens(self, owner: str, tokens: int, window_s: float = 60.0) -> int:
        return await self._count(owner, int(tokens), window_s)

    async def tokens_in_window(self, owner: str, window_s: float = 60.0) -> int:
        return await self._count(owner, 0, window_s)

    async def _count(self, owner: str, tokens: int, window_s: float) -> int:
        bucket = math.floor(self.clock() / TOKEN_BUCKET_S)
        oldest = bucket - math.ceil(window_s / TOKEN_BUCKET_S)
        try:
            total = await self._add_tokens(keys=[self._key("tokens", owner)],
                                           args=[bucket, tokens, oldest, math.ceil(window_s * 2)])
        except RedisError as exc:
            raise self._error(exc) from exc
        return int(total)

    async def put_auth_token(self, token: str, record: dict[str, Any], uses: int, expires_at: float) -> None:
        key = self._key("auth_token", digest(token))
        try:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.hset(key, mapping={"record": json.dumps(record), "uses": uses if uses > 0 else -1,
                                        "expires": expires_at})
                pipe.pexpire(key, max(1, _ms(expires_at - self.clock())))
                await pipe.execute()
        except RedisError as exc:
            raise self._error(exc) from exc

    async def get_auth_token(self, token: str) -> dict[str, Any] | None:
        try:
            record, expires = await self._redis.hmget(self._key("auth_token", digest(token)), ["record", "expires"])
        except RedisError as exc:
            raise self._error(exc) from exc
        if record is None or expires is None or float(expires) <= self.clock():
            return None
        loaded: dict[str, Any] = json.loads(record)
        return loaded

    async def use_auth_token(self, token: str) -> bool:
        try:
            granted = await self._use_token(keys=[self._key("auth_token", digest(token))], args=[self.clock()])
        except RedisError as exc:
            raise self._error(exc) from exc
        return bool(granted)

    async def aclose(self) -> None:
        await self._redis.aclose()


def _ms(seconds: float) -> int:
    return max(1, int(seconds * 1000))
