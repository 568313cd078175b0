"""Notification use cases: one booking.created event → clinic feed, push inbox, email — each at most
once in effect (keyed by event id, channel and recipient), each retried with backoff on failure."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol, TypeVar

from notif_worker.domain import BookingNotice, ChannelFailed, push_message
from notif_worker.repository import DeviceRow, FeedRow, InboxRow, NotifRepository
from petpro import db, paging

log = logging.getLogger("notif_worker")
T = TypeVar("T")
UnitOfWork = db.UnitOfWork[NotifRepository]


class Mailer(Protocol):
    async def send(self, notice: BookingNotice) -> None: ...


class PushProvider(Protocol):
    """Delivers a push to the owner.  The default provider stores it in the owner's inbox
    (GET /v1/me/notifications); an FCM/APNs provider would also send to registered devices."""

    async def push(self, repo: NotifRepository, notice: BookingNotice, title: str, body: str,
                   data: dict[str, str]) -> None: ...


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
        return min(self.base_delay * 2 ** attempt, self.max_delay)


# the clinic event serialised with its cursor, built by the service layer (protobuf ClinicEvent)
FeedEncoder = Callable[[BookingNotice, int], bytes]
FeedPublisher = Callable[[uuid.UUID, FeedRow], Awaitable[None]]


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
    async def feed_after(self, clinic_id: uuid.UUID, after: int, limit: int = 500) -> list[FeedRow]:
        async with self.read() as repo:
            return await repo.clinic_events_after(clinic_id, after, limit)

    async def inbox(self, user_id: uuid.UUID, size: int, token: str) -> tuple[list[InboxRow], str]:
        limit = paging.page_size(size)
        async with self.read() as repo:
            rows = await repo.list_inbox(user_id, paging.decode(token), limit)
        return rows, paging.next_token(rows, limit, lambda r: (r.created_at.isoformat(), str(r.id)))

    async def register_device(self, user_id: uuid.UUID, platform: str, token: str) -> DeviceRow:
        async with self.uow() as repo:
            return await repo.upsert_device(user_id, platform, token)
