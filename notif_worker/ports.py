"""The ports the notification use cases depend on: the repository of one unit of work, the unit of
work, the delivery channels (mail, push), and the clinic feed's live fan-out and event format."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from datetime import datetime
from typing import Protocol

from notif_worker.domain import BookingNotice, DeviceRow, FeedRow, InboxRow


class NotifRepository(Protocol):
    async def claim_delivery(self, event_id: uuid.UUID, channel: str, recipient: str) -> bool:
        """True when this (event, channel, recipient) still needs delivering (new, or a failed try)."""
        ...
    async def finish_delivery(self, event_id: uuid.UUID, channel: str, recipient: str, *, ok: bool,
                              error: str | None = None) -> None: ...
    async def add_clinic_event(self, clinic_id: uuid.UUID, event_id: uuid.UUID, type_: str,
                               occurred_at: datetime, payload_for: Callable[[int], bytes]) -> FeedRow | None:
        """Append with the next per-clinic cursor (``payload_for(cursor)`` serialises the event); None
        if the event is already there; raises FeedRace when a concurrent worker appended it."""
        ...
    async def clinic_events_after(self, clinic_id: uuid.UUID, after: int, limit: int) -> list[FeedRow]: ...
    async def add_inbox(self, row: InboxRow) -> bool: ...
    async def list_inbox(self, user_id: uuid.UUID, after: tuple[str, ...] | None, limit: int) -> list[InboxRow]: ...
    async def upsert_device(self, user_id: uuid.UUID, platform: str, token: str) -> DeviceRow: ...


UnitOfWork = Callable[[], AbstractAsyncContextManager[NotifRepository]]


class Mailer(Protocol):
    async def send(self, notice: BookingNotice) -> None: ...


class PushProvider(Protocol):
    """Delivers a push to the owner.  The default provider stores it in the owner's inbox
    (GET /v1/me/notifications); an FCM/APNs provider would also send to registered devices."""

    async def push(self, repo: NotifRepository, notice: BookingNotice, title: str, body: str,
                   data: dict[str, str]) -> None: ...


# the clinic event serialised with its cursor (protobuf ClinicEvent, see notif_worker/events.py)
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

    async def subscribe(self, clinic_id: uuid.UUID) -> tuple[asyncio.Queue[bytes], Callable[[], Awaitable[None]]]:
        ...

    async def run(self) -> None:
        """Receive and dispatch until cancelled (a background task)."""
        ...
