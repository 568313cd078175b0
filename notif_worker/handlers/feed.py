"""A clinic's live feed for one subscriber (the ClinicFeed.Subscribe stream): replay after the
subscriber's cursor from the database, then the live rows of every replica (Redis fan-out), with no
gap and no duplicate at the switch-over."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncGenerator, AsyncIterator

from notif_worker.domain import FeedRow
from notif_worker.ports import FeedCursor, FeedSubscribe, UnitOfWork

FEED_BATCH = 500  # rows per catch-up query


class ClinicFeed:
    """A clinic's feed for one subscriber: replay after the cursor, then live — no gap, no duplicate
    at the switch-over.

    Live messages are subscribed to *before* the replay query, and every message with a cursor at or
    below the last one sent is dropped.  Per-clinic cursors are committed in order, so a jump means a
    missed live message: the gap is filled from the database.  An idle stream re-checks the database
    every ``resync_seconds`` (covers a lost pub/sub message or a Redis restart).  ``close()`` ends
    every stream (graceful shutdown)."""

    def __init__(
        self,
        read: UnitOfWork,
        subscribe: FeedSubscribe,
        cursor_of: FeedCursor,
        *,
        resync_seconds: float = 15.0,
    ) -> None:
        self.read = read
        self.subscribe = subscribe
        self.cursor_of = cursor_of
        self.resync = resync_seconds
        self.closing = asyncio.Event()

    async def close(self) -> None:
        self.closing.set()

    async def follow(self, clinic_id: uuid.UUID, after: int) -> AsyncGenerator[FeedRow, None]:
        queue, unsubscribe = await self.subscribe(clinic_id)
        last = after
        try:
            async for row in self._catch_up(clinic_id, last):
                last = row.cursor
                yield row
            closing = asyncio.ensure_future(self.closing.wait())
            try:
                while not self.closing.is_set():
                    getter = asyncio.ensure_future(queue.get())
                    done, _ = await asyncio.wait(
                        {getter, closing}, timeout=self.resync, return_when=asyncio.FIRST_COMPLETED
                    )
                    pending: AsyncIterator[FeedRow]
                    if getter not in done:
                        getter.cancel()
                        if self.closing.is_set():
                            break
                        pending = self._catch_up(clinic_id, last)  # idle: re-check the database
                    else:
                        payload = getter.result()
                        cursor = self.cursor_of(payload)
                        if cursor <= last:
                            continue
                        pending = (
                            self._single(FeedRow(cursor, payload))
                            if cursor == last + 1
                            else self._catch_up(clinic_id, last)
                        )
                    async for row in pending:
                        last = row.cursor
                        yield row
            finally:
                closing.cancel()
        finally:
            await unsubscribe()

    async def _catch_up(self, clinic_id: uuid.UUID, after: int) -> AsyncIterator[FeedRow]:
        while True:
            async with self.read() as repo:
                rows = await repo.clinic_events_after(clinic_id, after, FEED_BATCH)
            for row in rows:
                after = row.cursor
                yield row
            if len(rows) < FEED_BATCH:
                return

    @staticmethod
    async def _single(row: FeedRow) -> AsyncIterator[FeedRow]:
        yield row
