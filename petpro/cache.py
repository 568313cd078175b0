"""Redis client factory (token cache, rate limits, idempotency records, live fan-out)."""

from __future__ import annotations

import redis.asyncio as aioredis


def make_redis(url: str) -> aioredis.Redis:
    return aioredis.from_url(url, decode_responses=False, health_check_interval=30, socket_timeout=5)
