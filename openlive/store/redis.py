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
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from ..redaction import redact
from .base import KEEP_PER_LINEAGE, TOKEN_BUCKET_S, Clock, StoreError, digest

# A key holding several entries (a lineage's index, an owner's leases) may only have its lifetime
# extended: a short-lived entry written last must not take a longer-lived one with it.
_EXTEND = """
local function extend(key, ttl_ms)
  if redis.call('PTTL', key) < tonumber(ttl_ms) then redis.call('PEXPIRE', key, ttl_ms) end
end
"""

# KEYS: snapshot, lineage index. ARGV: data, expires, now, keep, ttl_ms.
_PUT_SNAPSHOT = _EXTEND + """
redis.call('HSET', KEYS[1], 'data', ARGV[1], 'expires', ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[5])
redis.call('ZADD', KEYS[2], ARGV[3], KEYS[1])
local old = redis.call('ZRANGE', KEYS[2], 0, -(tonumber(ARGV[4]) + 1))
for _, key in ipairs(old) do redis.call('DEL', key); redis.call('ZREM', KEYS[2], key) end
extend(KEYS[2], ARGV[5])
return #old
"""

# KEYS: the owner's leases. ARGV: now, limit, expires, lease, ttl_ms.
_ACQUIRE = _EXTEND + """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then return 0 end
redis.call('ZADD', KEYS[1], ARGV[3], ARGV[4])
extend(KEYS[1], ARGV[5])
return 1
"""

# KEYS: the owner's leases. ARGV: expires, ttl_ms, lease... Only leases still held are renewed.
_RENEW = _EXTEND + """
for i = 3, #ARGV do redis.call('ZADD', KEYS[1], 'XX', ARGV[1], ARGV[i]) end
if redis.call('EXISTS', KEYS[1]) == 1 then extend(KEYS[1], ARGV[2]) end
return 0
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
        self._shown = redact(url)  # errors name the server, never its password
        self.prefix = prefix
        self.clock = clock
        try:
            self._redis = aioredis.Redis.from_url(url, socket_connect_timeout=5, socket_timeout=10)
        except ValueError as exc:  # not a redis:// (or rediss://, unix://) URL
            raise StoreError(f"Redis store {self._shown}: {exc}") from exc
        self._put_snapshot = self._redis.register_script(_PUT_SNAPSHOT)
        self._acquire = self._redis.register_script(_ACQUIRE)
        self._renew = self._redis.register_script(_RENEW)
        self._add_tokens = self._redis.register_script(_ADD_TOKENS)
        self._use_token = self._redis.register_script(_USE_TOKEN)

    async def open(self) -> "RedisStore":
        """Ping now, so that a wrong URL or a Redis that is down fails at start-up."""
        try:
            with self._errors():
                await self._redis.ping()
        except StoreError:
            await self._redis.aclose()
            raise
        return self

    def _key(self, kind: str, name: str) -> str:
        return f"{self.prefix}{kind}:{name}"

    @contextmanager
    def _errors(self) -> Iterator[None]:
        """Whatever redis-py raises (or a socket error it lets through) becomes one StoreError."""
        try:
            yield
        except (RedisError, OSError) as exc:
            raise StoreError(f"Redis store {self._shown}: {exc}") from exc

    async def put_snapshot(self, handle: str, lineage: str, data: bytes, ttl_s: float) -> None:
        now = self.clock()
        with self._errors():
            await self._put_snapshot(keys=[self._key("snapshot", digest(handle)), self._key("lineage", lineage)],
                                     args=[data, now + ttl_s, now, KEEP_PER_LINEAGE, _ms(ttl_s)])

    async def get_snapshot(self, handle: str) -> bytes | None:
        with self._errors():
            data, expires = await self._redis.hmget(self._key("snapshot", digest(handle)), ["data", "expires"])
        if data is None or expires is None or float(expires) <= self.clock():
            return None
        return bytes(data)

    async def acquire_lease(self, owner: str, lease: str, limit: int, ttl_s: float) -> bool:
        now = self.clock()
        with self._errors():
            granted = await self._acquire(keys=[self._key("leases", owner)],
                                          args=[now, limit, now + ttl_s, lease, _ms(ttl_s)])
        return bool(granted)

    async def renew_leases(self, leases: Iterable[tuple[str, str]], ttl_s: float) -> None:
        expires = self.clock() + ttl_s
        by_owner: dict[str, list[str]] = {}
        for owner, lease in leases:
            by_owner.setdefault(owner, []).append(lease)
        with self._errors():
            for owner, held in by_owner.items():
                await self._renew(keys=[self._key("leases", owner)], args=[expires, _ms(ttl_s), *held])

    async def release_lease(self, owner: str, lease: str) -> None:
        with self._errors():
            await self._redis.zrem(self._key("leases", owner), lease)

    async def add_tokens(self, owner: str, tokens: int, window_s: float = 60.0) -> int:
        return await self._count(owner, int(tokens), window_s)

    async def tokens_in_window(self, owner: str, window_s: float = 60.0) -> int:
        return await self._count(owner, 0, window_s)

    async def _count(self, owner: str, tokens: int, window_s: float) -> int:
        bucket = math.floor(self.clock() / TOKEN_BUCKET_S)
        oldest = bucket - math.ceil(window_s / TOKEN_BUCKET_S)
        with self._errors():
            total = await self._add_tokens(keys=[self._key("tokens", owner)],
                                           args=[bucket, tokens, oldest, math.ceil(window_s * 2)])
        return int(total)

    async def put_auth_token(self, token: str, record: dict[str, Any], uses: int, expires_at: float) -> None:
        key = self._key("auth_token", digest(token))
        with self._errors():
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.hset(key, mapping={"record": json.dumps(record), "uses": uses if uses > 0 else -1,
                                        "expires": expires_at})
                pipe.pexpire(key, max(1, _ms(expires_at - self.clock())))
                await pipe.execute()

    async def get_auth_token(self, token: str) -> dict[str, Any] | None:
        with self._errors():
            record, expires = await self._redis.hmget(self._key("auth_token", digest(token)), ["record", "expires"])
        if record is None or expires is None or float(expires) <= self.clock():
            return None
        loaded: dict[str, Any] = json.loads(record)
        return loaded

    async def use_auth_token(self, token: str) -> bool:
        with self._errors():
            granted = await self._use_token(keys=[self._key("auth_token", digest(token))], args=[self.clock()])
        return bool(granted)

    async def aclose(self) -> None:
        await self._redis.aclose()


def _ms(seconds: float) -> int:
    return max(1, int(seconds * 1000))
