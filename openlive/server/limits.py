"""Per-API-key limits: sessions open at once and tokens per minute, counted in the shared store.

With Redis as the store the counts are shared by every node, so a key's limits hold across the
whole deployment. A node that dies stops renewing its session leases; they lapse after
`LEASE_TTL_S`, so a crash never leaves a key locked out for long.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from ..protocol.errors import CloseCode, ProtocolError, unavailable
from ..store import Store, StoreError

log = logging.getLogger(__name__)

LEASE_TTL_S = 30.0
EXHAUSTED = "Resource has been exhausted (e.g. check quota)"


@contextmanager
def store_needed(what: str) -> Iterator[None]:
    """A step a session cannot go on without: a store failure closes it as the service being unavailable."""
    try:
        yield
    except StoreError as exc:
        log.error("%s failed: %s", what, exc)
        raise unavailable() from None


def too_many_sessions(limit: int) -> ProtocolError:
    return ProtocolError(CloseCode.INTERNAL, f"{EXHAUSTED}: more than {limit} concurrent sessions for this API key.")


def server_full(limit: int) -> ProtocolError:
    return ProtocolError(CloseCode.INTERNAL, f"{EXHAUSTED}: this server holds at most {limit} concurrent sessions.")


def over_token_budget(limit: int) -> ProtocolError:
    return ProtocolError(CloseCode.INTERNAL, f"{EXHAUSTED}: over {limit} tokens per minute for this API key.")


class KeyLimits:
    def __init__(self, store: Store, *, sessions_per_key: int, tokens_per_minute: int) -> None:
        self.store = store
        self.sessions_per_key = sessions_per_key
        self.tokens_per_minute = tokens_per_minute
        self._leases: set[tuple[str, str]] = set()
        self._heartbeat: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._heartbeat = asyncio.create_task(self._renew_forever(), name="lease-heartbeat")

    async def aclose(self) -> None:
        if self._heartbeat is not None:
            self._heartbeat.cancel()
            await asyncio.gather(self._heartbeat, return_exceptions=True)

    async def _renew_forever(self) -> None:
        while True:
            await asyncio.sleep(LEASE_TTL_S / 3)
            if self._leases:
                try:
                    await self.store.renew_leases(list(self._leases), LEASE_TTL_S)
                except StoreError as exc:
                    log.warning("could not renew session leases: %s", exc)

    async def open_session(self, owner: str) -> str:
        """Admit one more session of `owner`, or raise the close the client gets."""
        if self.tokens_per_minute > 0:
            with store_needed("token budget check"):
                spent = await self.store.tokens_in_window(owner)
            if spent >= self.tokens_per_minute:
                raise over_token_budget(self.tokens_per_minute)
        if self.sessions_per_key <= 0:
            return ""
        lease = uuid.uuid4().hex
        with store_needed("session limit check"):
            admitted = await self.store.acquire_lease(owner, lease, self.sessions_per_key, LEASE_TTL_S)
        if not admitted:
            log.info("refused a session: %d already open for this key", self.sessions_per_key)
            raise too_many_sessions(self.sessions_per_key)
        self._leases.add((owner, lease))
        return lease

    async def close_session(self, owner: str, lease: str) -> None:
        if not lease:
            return
        self._leases.discard((owner, lease))
        try:
            await self.store.release_lease(owner, lease)
        except StoreError as exc:
            log.warning("could not release a session lease (it lapses by itself): %s", exc)

    def budget(self, owner: str) -> "TokenBudget":
        return TokenBudget(self.store, owner, self.tokens_per_minute)


class TokenBudget:
    """One key's tokens per minute, as a session spends them."""

    def __init__(self, store: Store, owner: str, per_minute: int) -> None:
        self.store = store
        self.owner = owner
        self.per_minute = per_minute

    async def admit(self, tokens: int) -> None:
        """Charge a turn's input before it runs; over the budget, the quota error.

        With the store unreachable the turn goes ahead unchecked: a session already admitted
        carries on through a Redis restart (new sessions are refused meanwhile, at `open_session`)."""
        if self.per_minute <= 0:
            return
        try:
            used = await self.store.tokens_in_window(self.owner)
            if used + tokens > self.per_minute:
                raise over_token_budget(self.per_minute)
            await self.store.add_tokens(self.owner, tokens)
        except StoreError as exc:
            log.warning("token budget not checked, the store failed: %s", exc)

    async def spend(self, tokens: int) -> None:
        if self.per_minute <= 0 or tokens <= 0:
            return
        try:
            await self.store.add_tokens(self.owner, tokens)
        except StoreError as exc:
            log.warning("could not count %d tokens: %s", tokens, exc)
