"""Notification use cases: one booking.created event → clinic feed, push inbox, email — each at most
once in effect (keyed by event id, channel and recipient), each retried with backoff on failure."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TypeVar

from notif_worker.domain import BookingNotice, ChannelFailed, DeviceRow, FeedRow, InboxRow, push_message
from notif_worker.ports import (
    FeedCursor,
    FeedEncoder,
    FeedPublisher,
    FeedSubscribe,
    Mailer,
    NotifRepository,
    PushProvider,
    UnitOfWork,
)
from petpro import paging

log = logging.getLogger("notif_worker")
T = TypeVar("T")
FEED_BATCH = 500  # rows per catch-up query


class InboxPush:
    async def push(self, repo: NotifRepository, notice: BookingNotice, title: str, body: str,
                   data: dict[str, str]) -> None:
        await repo.add_inbox(InboxRow(uuid.uuid4(), notice.owner_user_id, notice.event_id, title, body, data,
                                      datetime.now(UTC)))


@dataclass(frozen=True)
class Retry:
    attempts: int = 4
    base_delay: float = 0.2
    max_delay: float = 3.0

    def delay(self, attempt: int) -> float:
        return float(min(self.base_delay * 2 ** attempt, self.max_delay))


class NotifyHandlers:
    def __init__(self, uow: UnitOfWork, mailer: Mailer, push: PushProvider, encode_feed: FeedEncoder,
                 publish_feed: FeedPublisher, retry: Retry = Retry(), read: UnitOfWork | None = None) -> None:
        self.uow = uow
        self.read = read or uow  # read-only: no transaction
        self.mailer = mailer
        self.push_provider = push
        self.encode_feed = encode_feed
        self.publish_feed = publish_feed
        self.retry = retry

    async def notify(self, n: BookingNotice) -> None:
        """All channels for one event.  Raises ChannelFailed when a step exhausted its retries."""
        email_due = await self._with_retry("feed+push", lambda: self._record(n))
        if email_due:
            await self._with_retry("email", lambda: self._send_email(n))

    async def _with_retry(self, channel: str, step: Callable[[], Awaitable[T]]) -> T:
        for attempt in range(self.retry.attempts):
            try:
                return await step()
            except Exception as exc:
                if attempt + 1 == self.retry.attempts:
                    raise ChannelFailed(channel, f"{type(exc).__name__}: {exc}") from exc
                log.warning("%s delivery failed (attempt %d): %s", channel, attempt + 1, exc)
                await asyncio.sleep(self.retry.delay(attempt))
        raise AssertionError("unreachable")

    async def _record(self, n: BookingNotice) -> bool:
        """One transaction for what lives in our database: the clinic feed row, the push (inbox) and
        the email's delivery claim.  Returns whether the email still has to be sent."""
        async with self.uow() as repo:
            row = await repo.add_clinic_event(n.clinic_id, n.event_id, "booking.created", n.occurred_at,
                                              lambda cursor: self.encode_feed(n, cursor))
            if await repo.claim_delivery(n.event_id, "push", str(n.owner_user_id)):
                title, body, data = push_message(n)
                await self.push_provider.push(repo, n, title, body, data)
                await repo.finish_delivery(n.event_id, "push", str(n.owner_user_id), ok=True)
            email_due = await repo.claim_delivery(n.event_id, "email", n.owner_email)
        if row is not None:
            await self.publish_feed(n.clinic_id, row)  # after commit: live subscribers see committed rows
        return email_due

    async def _send_email(self, n: BookingNotice) -> None:
        try:
            await self.mailer.send(n)
        except Exception as exc:
            async with self.uow() as repo:
                await repo.finish_delivery(n.event_id, "email", n.owner_email, ok=False, error=str(exc)[:1000])
            raise
        async with self.uow() as repo:
            await repo.finish_delivery(n.event_id, "email", n.owner_email, ok=True)

    # -- reads -------------------------------------------------------------------------------------
    async def inbox(self, user_id: uuid.UUID, size: int, token: str) -> tuple[list[InboxRow], str]:
        limit = paging.page_size(size)
        async with self.read() as repo:
            rows = await repo.list_inbox(user_id, paging.decode(token), limit)
        return rows, paging.next_token(rows, limit, lambda r: (r.created_at.isoformat(), str(r.id)))

    async def register_device(self, user_id: uuid.UUID, platform: str, token: str) -> DeviceRow:
        async with self.uow() as repo:
            return await repo.upsert_device(user_id, platform, token)


class ClinicFeed:
    """A clinic's feed for one subscriber: replay after the cursor, then live — no gap, no duplicate
    at the switch-over.

    Live messages are subscribed to *before* the replay query, and every message with a cursor at or
    below the last one sent is dropped.  Per-clinic cursors are committed in order, so a jump means a
    missed live message: the gap is filled from the database.  An idle stream re-checks the database
    every ``resync_seconds`` (covers a lost pub/sub message or a Redis restart).  ``close()`` ends
    every stream (graceful shutdown)."""

    def __init__(self, read: UnitOfWork, subscribe: FeedSubscribe, cursor_of: FeedCursor, *,
                 resync_seconds: float = 15.0) -> None:
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
                    done, _ = await asyncio.wait({getter, closing}, timeout=self.resync,
                                                 return_when=asyncio.FIRST_COMPLETED)
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
                        pending = (self._single(FeedRow(cursor, payload)) if cursor == last + 1
                                   else self._catch_up(clinic_id, last))
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
