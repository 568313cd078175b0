"""The ports the notification use cases depend on: the repository of one unit of work, the unit of
work, the delivery channels (mail, push), and the clinic feed's live fan-out and event format."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from datetime import datetime
from typing import Protocol

from notif_worker.domain import (
    BookingNotice,
    DeviceRow,
    FeedRow,
    InboxRow,
    Preferences,
    Recorded,
    Reminder,
    ReminderChange,
)


class NotifRepository(Protocol):
    async def record(
        self,
        n: BookingNotice,
        *,
        push: InboxRow | None,
        email: bool,
        feed_type: str,
        feed_tail: bytes,
        reminders: ReminderChange,
        park: tuple[str, bytes],
        now: datetime,
    ) -> Recorded:
        """One event, atomically, by its place in its booking's order (version 1 first, then applied + 1):
        - the next version (or a copy of the last one applied): the progress, the parked successor
          taken, the reminders' change, the push (its delivery recorded as delivered, with ``push``'s
          inbox row), the email's claim (if ``email``) and the clinic feed row (``feed_tail``: the clinic
          event encoded with cursor 0; the row's payload is ``cursor_field(cursor) + feed_tail``, the
          cursor the clinic's next);
        - a copy of an older version: only what is missing of the push, the email's claim (unless it was
          delivered) and the feed row; no progress, no reminders;
        - a version after a missing one: parked (``park``: its topic and payload, at ``now``), nothing
          else written.
        Every delivery is recorded once per (event, channel, recipient); the email is due when its
        claim is new or its last send failed."""
        ...

    async def finish_delivery(
        self, event_id: uuid.UUID, channel: str, recipient: str, *, ok: bool, error: str | None = None
    ) -> None:
        """The outcome of a claimed delivery: delivered, or failed with ``error`` (claimable again)."""
        ...

    async def parked_due(self, parked_before: datetime, limit: int = 50) -> list[tuple[str, int]]:
        """(booking, version) of the parked events to apply now: parked before ``parked_before`` (their
        predecessor presumed lost) or whose predecessor has been applied; lowest version per booking."""
        ...

    async def release_parked(self, booking_id: str, version: int) -> tuple[str, bytes] | None:
        """Take a parked event out (topic, payload), its booking's progress moved to just before it
        (never back); None when it is not parked (any more)."""
        ...

    async def clinic_events_after(self, clinic_id: uuid.UUID, after: int, limit: int) -> list[FeedRow]:
        """The clinic's feed rows after cursor ``after``, in cursor order."""
        ...

    async def add_inbox(self, row: InboxRow) -> bool:
        """False when the owner's inbox has a row of this event already."""
        ...

    async def list_inbox(
        self, user_id: uuid.UUID, after: tuple[str, ...] | None, limit: int
    ) -> list[InboxRow]:
        """Newest first (created_at, id), after the page token's (created_at iso, id)."""
        ...

    async def upsert_device(self, user_id: uuid.UUID, platform: str, token: str) -> DeviceRow:
        """One device per (user, token): registering it again keeps its id and takes the new platform."""
        ...

    # reminders
    async def claim_due_reminder(self, now: datetime) -> Reminder | None:
        """The most overdue pending reminder of a booking not started yet, locked with SKIP LOCKED until
        the transaction ends (another replica claims the next one)."""
        ...

    async def mark_reminder_sent(self, reminder_id: uuid.UUID, now: datetime) -> None: ...
    # preferences
    async def preferences(self, user_id: uuid.UUID) -> Preferences:
        """The owner's preferences; all on for an owner who never changed them."""
        ...

    async def update_preferences(self, user_id: uuid.UUID, changes: dict[str, bool]) -> Preferences: ...


UnitOfWork = Callable[[], AbstractAsyncContextManager[NotifRepository]]


class Mailer(Protocol):
    async def send(self, notice: BookingNotice) -> None: ...


class PushProvider(Protocol):
    """Delivers a push to the owner as the inbox row it consists of (GET /v1/me/notifications),
    recorded with the event in one statement.  An FCM/APNs provider would also send the row to the
    owner's registered devices, after the commit."""

    def inbox_row(self, notice: BookingNotice, title: str, body: str, data: dict[str, str]) -> InboxRow: ...


# the clinic event serialised with its cursor (protobuf ClinicEvent, see notif_worker/adapters/codecs.py); with
# cursor 0 the cursor is left out and ``events.cursor_field(c) + that`` is the encoding with cursor c
FeedEncoder = Callable[[BookingNotice, int], bytes]
# the cursor of a serialized clinic event (live messages carry only the payload)
FeedCursor = Callable[[bytes], int]
# publishes a committed feed row to every replica's live subscribers
FeedPublisher = Callable[[uuid.UUID, FeedRow], Awaitable[None]]
# subscribe(clinic_id) → (queue of serialized clinic events, unsubscribe)
FeedSubscribe = Callable[[uuid.UUID], Awaitable[tuple[asyncio.Queue[bytes], Callable[[], Awaitable[None]]]]]


class LiveFanout(Protocol):
    """Live fan-out of committed feed rows to the subscribers on every replica (Redis pub/sub)."""

    async def publish(self, clinic_id: uuid.UUID, row: FeedRow) -> None: ...

    async def subscribe(
        self, clinic_id: uuid.UUID
    ) -> tuple[asyncio.Queue[bytes], Callable[[], Awaitable[None]]]: ...

    async def run(self) -> None:
        """Receive and dispatch until cancelled (a background task)."""
        ...
