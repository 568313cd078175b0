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
    async def claim_delivery(self, event_id: uuid.UUID, channel: str, recipient: str) -> bool:
        """True when this (event, channel, recipient) still needs delivering (new, or a failed try)."""
        ...

    async def finish_delivery(
        self, event_id: uuid.UUID, channel: str, recipient: str, *, ok: bool, error: str | None = None
    ) -> None: ...
    async def add_clinic_event(
        self,
        clinic_id: uuid.UUID,
        event_id: uuid.UUID,
        type_: str,
        occurred_at: datetime,
        payload_for: Callable[[int], bytes],
    ) -> FeedRow | None:
        """Append with the next per-clinic cursor (``payload_for(cursor)`` serialises the event); None
        if the event is already there; raises FeedRace when a concurrent worker appended it."""
        ...

    async def record_next(
        self,
        n: BookingNotice,
        *,
        push: InboxRow | None,
        email: bool,
        feed_type: str,
        feed_tail: bytes,
        reminders: ReminderChange,
        now: datetime,
    ) -> Recorded | None:
        """If the event is its booking's next version (version 1 first, then applied + 1), all of it at
        once and atomically: the progress, the parked successor taken, the reminders' change, the push
        row (delivered), the email's claim (if ``email``) and the clinic feed row (``feed_tail``: the
        clinic event encoded with cursor 0; the row's payload is ``cursor_field(cursor) + feed_tail``).
        None, having written nothing, when it is not the next version (a copy, or out of order)."""
        ...

    async def clinic_events_after(self, clinic_id: uuid.UUID, after: int, limit: int) -> list[FeedRow]: ...
    async def add_inbox(self, row: InboxRow) -> bool: ...
    async def list_inbox(
        self, user_id: uuid.UUID, after: tuple[str, ...] | None, limit: int
    ) -> list[InboxRow]: ...
    async def upsert_device(self, user_id: uuid.UUID, platform: str, token: str) -> DeviceRow: ...
    # per-booking order of lifecycle events (they come from several topics)
    async def lock_progress(self, booking_id: str) -> int:
        """The last version applied (0: none), locked until the transaction ends."""
        ...

    async def set_progress(self, booking_id: str, version: int) -> None: ...
    async def park(self, booking_id: str, version: int, topic: str, payload: bytes) -> None: ...
    async def take_parked(self, booking_id: str, version: int) -> tuple[str, bytes] | None: ...
    async def stale_parked(self, parked_before: datetime, limit: int = 50) -> list[tuple[str, int]]: ...
    # reminders
    async def schedule_reminders(self, n: BookingNotice, offsets: tuple[int, ...], now: datetime) -> None: ...
    async def move_reminders(
        self, booking_id: str, start: datetime, end: datetime, now: datetime
    ) -> None: ...
    async def drop_reminders(self, booking_id: str) -> None: ...
    async def claim_due_reminder(self, now: datetime) -> Reminder | None:
        """Locked with SKIP LOCKED until the transaction ends."""
        ...

    async def mark_reminder_sent(self, reminder_id: uuid.UUID, now: datetime) -> None: ...
    # preferences
    async def preferences(self, user_id: uuid.UUID) -> Preferences: ...
    async def update_preferences(self, user_id: uuid.UUID, changes: dict[str, bool]) -> Preferences: ...


UnitOfWork = Callable[[], AbstractAsyncContextManager[NotifRepository]]


class Mailer(Protocol):
    async def send(self, notice: BookingNotice) -> None: ...


class PushProvider(Protocol):
    """Delivers a push to the owner.  The default provider stores it in the owner's inbox
    (GET /v1/me/notifications); an FCM/APNs provider would also send to registered devices."""

    async def push(
        self, repo: NotifRepository, notice: BookingNotice, title: str, body: str, data: dict[str, str]
    ) -> None: ...

    def inbox_row(
        self, notice: BookingNotice, title: str, body: str, data: dict[str, str]
    ) -> InboxRow | None:
        """The push as the inbox row it consists of, recorded with the event in one statement; None
        when this provider has more to do, in ``push`` inside the event's transaction."""
        ...


# the clinic event serialised with its cursor (protobuf ClinicEvent, see notif_worker/events.py); with
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
