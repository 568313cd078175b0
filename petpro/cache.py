"""Caches: the Redis client factory (fan-out, shared state) and an in-process versioned memo."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Hashable
from typing import TYPE_CHECKING, Any, TypeVar

from cachetools import LRUCache

if TYPE_CHECKING:
    import redis.asyncio as aioredis

V = TypeVar("V")


def make_redis(url: str) -> aioredis.Redis:
    import redis.asyncio as aioredis  # only the services that use Redis pay for importing it (~7 MB)

    from petpro import telemetry

    client = aioredis.from_url(url, decode_responses=False, health_check_interval=30, socket_timeout=5)
    return telemetry.instrument_redis(client)  # a CLIENT span per command


class VersionedMemo:
    """Async read-through memo that is never stale past a committed change: every entry remembers the
    data version it was loaded at (a counter the writers bump in the same transaction as the change),
    and a read with a newer version loads again.  No TTL: an unchanged catalog is served from memory
    however old, a changed one never (bounded by an LRU)."""

    def __init__(self, maxsize: int = 4096) -> None:
        self._cache: LRUCache[Hashable, tuple[int, Any]] = LRUCache(maxsize=maxsize)

    def peek(self, key: Hashable) -> tuple[int, Any] | None:
        """The entry kept for ``key`` and the version it was loaded at, unchecked: for a caller that
        verifies the version itself, in the statement that relies on the entry."""
        return self._cache.get(key)

    async def get(self, key: Hashable, version: int, load: Callable[[], Awaitable[V]]) -> V:
        hit = self._cache.get(key)
        if hit is not None and hit[0] == version:
            return hit[1]
        value = await load()
        if value is not None:
            self._cache[key] = (version, value)
        return value
