"""Live fan-out of clinic events over Redis pub/sub, so any notif_worker replica serves subscribers.

One Redis subscription per process; local subscribers get in-memory queues (bounded: a subscriber
that falls behind is resynchronised from the database by the feed's gap handling)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections import defaultdict
from collections.abc import Awaitable, Callable

import redis.asyncio as aioredis

from notif_worker.domain import FeedRow

log = logging.getLogger("notif_worker.fanout")
PREFIX = "petpro:clinic-feed:"


class RedisFanout:
    def __init__(self, redis: aioredis.Redis, queue_size: int = 1000) -> None:
        self.redis = redis
        self.queue_size = queue_size
        self._local: dict[uuid.UUID, set[asyncio.Queue[bytes]]] = defaultdict(set)
        self._pubsub = redis.pubsub()
        self._ready = asyncio.Event()

    async def publish(self, clinic_id: uuid.UUID, row: FeedRow) -> None:
        await self.redis.publish(f"{PREFIX}{clinic_id}", row.payload)

    async def subscribe(
        self, clinic_id: uuid.UUID
    ) -> tuple[asyncio.Queue[bytes], Callable[[], Awaitable[None]]]:
        await self._ready.wait()
        q: asyncio.Queue[bytes] = asyncio.Queue(self.queue_size)
        self._local[clinic_id].add(q)

        async def unsubscribe() -> None:
            self._local[clinic_id].discard(q)
            if not self._local[clinic_id]:
                self._local.pop(clinic_id, None)

        return q, unsubscribe

    async def run(self) -> None:
        """Receive every clinic's messages (pattern subscription) and dispatch to local queues."""
        while True:
            try:
                await self._pubsub.psubscribe(f"{PREFIX}*")
                self._ready.set()
                async for msg in self._pubsub.listen():
                    if msg.get("type") != "pmessage":
                        continue
                    channel = msg["channel"].decode() if isinstance(msg["channel"], bytes) else msg["channel"]
                    try:
                        clinic = uuid.UUID(channel.removeprefix(PREFIX))
                    except ValueError:
                        continue
                    for q in list(self._local.get(clinic, ())):
                        with contextlib.suppress(asyncio.QueueFull):  # the feed catches up from the DB
                            q.put_nowait(msg["data"])
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("redis fan-out lost its connection: %s; resubscribing", exc)
                await asyncio.sleep(1)

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self._pubsub.aclose()
