"""Notification use cases: one booking.created event → clinic feed, push inbox, email — each at most
once in effect (keyed by event id, channel and recipient), each retried with backoff on failure."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TypeVar

from notif_worker.domain import (
    BookingNotice,
    ChannelFailed,
    DeviceRow,
    FeedRow,
    InboxRow,
    Preferences,
    Recorded,
    ReminderChange,
    push_message,
)
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
    async def push(
        self, repo: NotifRepository, notice: BookingNotice, title: str, body: str, data: dict[str, str]
    ) -> None:
        await repo.add_inbox(self.inbox_row(notice, title, body, data))

    def inbox_row(self, notice: BookingNotice, title: str, body: str, data: dict[str, str]) -> InboxRow:
        return InboxRow(
            uuid.uuid4(), notice.owner_user_id, notice.event_id, title, body, data, datetime.now(UTC)
        )


@dataclass(frozen=True)
class Retry:
    attempts: int = 4
    base_delay: float = 0.2
    max_delay: float = 3.0

    def delay(self, attempt: int) -> float:
        return float(min(self.base_delay * 2**attempt, self.max_delay))


class NotifyHandlers:
    def __init__(
        self,
        uow: UnitOfWork,
        mailer: Mailer,
        push: PushProvider,
        encode_feed: FeedEncoder,
        publish_feed: FeedPublisher,
        retry: Retry = Retry(),
        read: UnitOfWork | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        reminder_offsets: tuple[int, ...] = (2880, 120),
    ) -> None:
        self.clock = clock
        self.reminder_offsets = reminder_offsets
        self.uow = uow
        self.read = read or uow  # no transaction: reads, and single-statement writes
        self.mailer = mailer
        self.push_provider = push
        self.encode_feed = encode_feed
        self.publish_feed = publish_feed
        self.retry = retry

    async def notify(
        self,
        n: BookingNotice,
        topic: str = "",
        payload: bytes = b"",
        decode: Callable[[str, bytes], BookingNotice] | None = None,
    ) -> None:
        """All channels for one event, in the booking's order: an event whose predecessor (version - 1)
        has not been applied yet is parked in the database and applied right after it, by whichever
        worker applies the predecessor.  Raises ChannelFailed when a step exhausted its retries."""
        parked = await self._notify_one(n, topic, payload)
        while parked is not None and decode is not None:
            parked = await self._notify_one(
                decode(*parked), *parked
            )  # the next version was waiting for this one

    async def _notify_one(self, n: BookingNotice, topic: str, payload: bytes) -> tuple[str, bytes] | None:
        email_due, parked = await self._with_retry("feed+push", lambda: self._record(n, topic, payload))
        if email_due:
            await self._with_retry("email", lambda: self._send_email(n))
        return parked

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

    async def _record(
        self, n: BookingNotice, topic: str, payload: bytes
    ) -> tuple[bool, tuple[str, bytes] | None]:
        """What lives in our database, atomically: the booking's order, the clinic feed row, the push
        (inbox) and the email's delivery claim.  Returns whether the email still has to be sent, and the
        parked next event of this booking, if one was waiting.

        The common case, an event that is its booking's next version, is one statement (one round trip,
        no transaction held open across round trips, so the clinic's counter row is locked only inside
        the database); a copy or an out-of-order event takes the transaction below."""
        recorded = await self._record_next(n)
        if recorded is not None:
            if recorded.feed is not None:
                await self.publish_feed(n.clinic_id, recorded.feed)  # committed: the statement was its own
            return recorded.email_due, recorded.parked
        async with self.uow() as repo:
            applied = await repo.lock_progress(n.booking_id)
            if n.version > applied + 1 and payload:  # an earlier change is still on its way
                await repo.park(n.booking_id, n.version, topic, payload)
                return False, None
            nxt = None
            if n.version > applied:
                await repo.set_progress(n.booking_id, n.version)
                nxt = await repo.take_parked(n.booking_id, n.version + 1)
                await self._reminders(repo, n)
            prefs = await repo.preferences(n.owner_user_id)
            if prefs.wants(n.category, "push") and await repo.claim_delivery(
                n.event_id, "push", str(n.owner_user_id)
            ):
                title, body, data = push_message(n)
                await self.push_provider.push(repo, n, title, body, data)
                await repo.finish_delivery(n.event_id, "push", str(n.owner_user_id), ok=True)
            email_due = prefs.wants(n.category, "email") and await repo.claim_delivery(
                n.event_id, "email", n.owner_email
            )
            # last: taking the clinic's next cursor locks the clinic's counter row until the commit, so
            # the feed's order is commit order; the lock is held for this statement and the commit only
            row = await repo.add_clinic_event(
                n.clinic_id,
                n.event_id,
                f"booking.{n.kind}",
                n.occurred_at,
                lambda cursor: self.encode_feed(n, cursor),
            )
        if row is not None:
            await self.publish_feed(n.clinic_id, row)  # after commit: live subscribers see committed rows
        return email_due, nxt

    async def _record_next(self, n: BookingNotice) -> Recorded | None:
        prefs = Preferences()
        if n.category != "transactional":  # confirmations and cancellations go out whatever the preferences
            async with self.read() as repo:
                prefs = await repo.preferences(n.owner_user_id)
        push = None
        if prefs.wants(n.category, "push"):
            push = self.push_provider.inbox_row(n, *push_message(n))
            if push is None:  # the provider delivers inside the event's transaction
                return None
        async with self.read() as repo:
            return await repo.record_next(
                n,
                push=push,
                email=prefs.wants(n.category, "email"),
                feed_type=f"booking.{n.kind}",
                feed_tail=self.encode_feed(n, 0),
                reminders=self._reminder_change(n),
                now=self.clock(),
            )

    async def release_stale_parked(
        self, decode: Callable[[str, bytes], BookingNotice], max_wait: timedelta
    ) -> int:
        """An event parked longer than ``max_wait`` is applied anyway (then the ones after it): its
        predecessor is presumed lost, and a late notice beats none.  Never before ``max_wait``."""
        async with self.read() as repo:
            stale = await repo.stale_parked(self.clock() - max_wait)
        released = 0
        for booking_id, version in stale:
            async with self.uow() as repo:
                applied = await repo.lock_progress(booking_id)
                parked = await repo.take_parked(booking_id, version) if version > applied + 1 else None
                if parked is not None:
                    await repo.set_progress(booking_id, version - 1)  # skip the missing ones
            if parked is not None:
                log.warning(
                    "applying a parked event whose predecessor never came",
                    extra={"fields": {"booking_id": booking_id, "version": version}},
                )
                await self.notify(decode(*parked), *parked, decode)
                released += 1
        return released

    def _reminder_change(self, n: BookingNotice) -> ReminderChange:
        """Made at confirmation, moved with a reschedule, dropped when the booking ends otherwise."""
        if n.kind == "created":
            return "schedule", n.reminder_offsets or self.reminder_offsets
        if n.kind == "rescheduled":
            return "move", ()
        if n.kind in ("cancelled", "completed", "no_show"):
            return "drop", ()
        return None

    async def _reminders(self, repo: NotifRepository, n: BookingNotice) -> None:
        change, now = self._reminder_change(n), self.clock()
        if change is None:
            return
        if change[0] == "schedule":
            await repo.schedule_reminders(n, change[1], now)
        elif change[0] == "move":
            await repo.move_reminders(n.booking_id, n.start, n.end, now)
        else:
            await repo.drop_reminders(n.booking_id)

    async def send_due_reminders(self, limit: int = 100) -> int:
        """Send due reminders, one transaction each: the row stays locked (SKIP LOCKED for the other
        replicas) while its push is stored and its email sent, and is marked SENT in the same
        transaction — a worker killed before the commit leaves it PENDING for the next one."""
        sent = 0
        for _ in range(limit):
            async with self.uow() as repo:
                r = await repo.claim_due_reminder(self.clock())
                if r is None:
                    return sent
                prefs = await repo.preferences(r.notice.owner_user_id)
                if prefs.wants("reminders", "push"):
                    title, body, data = push_message(r.notice)
                    await self.push_provider.push(repo, r.notice, title, body, data)
                if prefs.wants("reminders", "email"):
                    await self.mailer.send(r.notice)
                await repo.mark_reminder_sent(r.id, self.clock())
            sent += 1
        return sent

    async def _send_email(self, n: BookingNotice) -> None:
        # the outcome is one UPDATE: on the autocommit connection it is its own transaction (one round
        # trip instead of BEGIN, UPDATE, COMMIT)
        try:
            await self.mailer.send(n)
        except Exception as exc:
            async with self.read() as repo:
                await repo.finish_delivery(
                    n.event_id, "email", n.owner_email, ok=False, error=str(exc)[:1000]
                )
            raise
        async with self.read() as repo:
            await repo.finish_delivery(n.event_id, "email", n.owner_email, ok=True)

    # -- reads -------------------------------------------------------------------------------------
    async def inbox(self, user_id: uuid.UUID, size: int, token: str) -> tuple[list[InboxRow], str]:
        limit = paging.page_size(size)
        async with self.read() as repo:
            rows = await repo.list_inbox(user_id, paging.decode(token), limit)
        return rows, paging.next_token(rows, limit, lambda r: (r.created_at.isoformat(), str(r.id)))

    async def preferences(self, user_id: uuid.UUID) -> Preferences:
        async with self.read() as repo:
            return await repo.preferences(user_id)

    async def update_preferences(self, user_id: uuid.UUID, changes: dict[str, bool]) -> Preferences:
        async with self.uow() as repo:
            return await repo.update_preferences(user_id, changes)

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
