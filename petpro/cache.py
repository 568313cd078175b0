"""Caches: the Redis client factory (fan-out, shared state) and an in-process TTL memo."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Hashable
from typing import TYPE_CHECKING, Any, TypeVar

from cachetools import TTLCache

if TYPE_CHECKING:
    import redis.asyncio as aioredis

V = TypeVar("V")


def make_redis(url: str) -> aioredis.Redis:
    import redis.asyncio as aioredis  # only the services that use Redis pay for importing it (~7 MB)

    from petpro import telemetry

    client = aioredis.from_url(url, decode_responses=False, health_check_interval=30, socket_timeout=5)
    return telemetry.instrument_redis(client)  # a CLIENT span per command


class TtlMemo:
    """Async read-through memo with a TTL (cachetools.TTLCache underneath) for data that changes
    rarely and may be a few seconds stale: the catalog (clinics, services).  ``ttl=0`` disables it."""

    def __init__(self, ttl: float, maxsize: int = 4096) -> None:
        self.ttl = ttl
        self._cache: TTLCache[Hashable, Any] = TTLCache(maxsize=maxsize, ttl=ttl or 1)

    async def get(self, key: Hashable, load: Callable[[], Awaitable[V]]) -> V:
        if self.ttl > 0:
            try:
                return self._cache[key]
            except KeyError:
                pass
        value = await load()
        if self.ttl > 0 and value is not None:
            self._cache[key] = value
        return value
