"""The Redis client factory (fan-out, shared state, throttles).  The in-process memo is petpro.memo."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import redis.asyncio as aioredis


def make_redis(url: str) -> aioredis.Redis:
    import redis.asyncio as aioredis  # only the services that use Redis pay for importing it (~7 MB)

    from petpro import telemetry

    client = aioredis.from_url(url, decode_responses=False, health_check_interval=30, socket_timeout=5)
    return telemetry.instrument_redis(client)  # a CLIENT span per command
