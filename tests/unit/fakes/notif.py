"""In-memory NotifRepository (notif_worker.ports), a recording mailer and a live-feed hub."""

from __future__ import annotations

import asyncio
import copy
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from notif_worker.domain import (
    BookingNotice,
    DeviceRow,
    FeedRow,
    InboxRow,
    Preferences,
    Recorded,
    Reminder,
    ReminderChange,
    reminder_due,
)
from notif_worker.events import cursor_field
from tests.unit.fakes import FakeUnitOfWork


@dataclass
class NotifStore:
    deliveries: dict[tuple[uuid.UUID, str, str], dict[str, Any]] = field(default_factory=dict)
    feed: dict[uuid.UUID, list[tuple[uuid.UUID, FeedRow]]] = field(
        default_factory=dict
    )  # clinic → (event, row)
    inbox: list[InboxRow] = field(default_factory=list)
    devices: dict[tuple[uuid.UUID, str], DeviceRow] = field(default_factory=dict)
    progress: dict[str, int] = field(default_factory=dict)  # booking → last version applied
    parked: dict[tuple[str, int], tuple[str, bytes]] = field(default_factory=dict)
    reminders: dict[uuid.UUID, dict[str, Any]] = field(default_factory=dict)
    preferences: dict[uuid.UUID, Preferences] = field(default_factory=dict)


class FakeNotifRepository:
    def __init__(self, store: NotifStore) -> None:
        self.s = store

    async def claim_delivery(self, event_id: uuid.UUID, channel: str, recipient: str) -> bool:
        row = self.s.deliveries.setdefault(
            (event_id, channel, recipient), {"status": "pending", "attempts": 0}
        )
        return row["status"] != "delivered"

    async def finish_delivery(
        self, event_id: uuid.UUID, channel: str, recipient: str, *, ok: bool, error: str | None = None
    ) -> None:
        row = self.s.deliveries[(event_id, channel, recipient)]
        row.update(
            status="delivered" if ok else "failed", attempts=int(row["attempts"]) + 1, last_error=error
        )

    async def add_clinic_event(
        self,
        clinic_id: uuid.UUID,
        event_id: uuid.UUID,
        type_: str,
        occurred_at: datetime,
        payload_for: Callable[[int], bytes],
    ) -> FeedRow | None:
        if any(e == event_id for rows in self.s.feed.values() for e, _ in rows):
            return None
        rows = self.s.feed.setdefault(clinic_id, [])
        cursor = len(rows) + 1
        row = FeedRow(cursor, payload_for(cursor))
        rows.append((event_id, row))
        return row

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
        applied = self.s.progress.get(n.booking_id)
        if not (applied == n.version - 1 or (applied is None and n.version == 1)):
            return None
        self.s.progress[n.booking_id] = n.version
        parked = await self.take_parked(n.booking_id, n.version + 1)
        if reminders is not None and reminders[0] == "schedule":
            await self.schedule_reminders(n, reminders[1], now)
        elif reminders is not None and reminders[0] == "move":
            await self.move_reminders(n.booking_id, n.start, n.end, now)
        elif reminders is not None:
            await self.drop_reminders(n.booking_id)
        if push is not None and await self.claim_delivery(n.event_id, "push", str(n.owner_user_id)):
            await self.add_inbox(push)
            await self.finish_delivery(n.event_id, "push", str(n.owner_user_id), ok=True)
        email_due = email and await self.claim_delivery(n.event_id, "email", n.owner_email)
        feed = await self.add_clinic_event(
            n.clinic_id, n.event_id, feed_type, n.occurred_at, lambda cursor: cursor_field(cursor) + feed_tail
        )
        return Recorded(email_due, feed, parked)

    async def clinic_events_after(self, clinic_id: uuid.UUID, after: int, limit: int) -> list[FeedRow]:
        return [r for _, r in self.s.feed.get(clinic_id, []) if r.cursor > after][:limit]

    async def add_inbox(self, row: InboxRow) -> bool:
        if any(r.user_id == row.user_id and r.event_id == row.event_id for r in self.s.inbox):
            return False
        self.s.inbox.append(copy.deepcopy(row))
        return True

    async def list_inbox(
        self, user_id: uuid.UUID, after: tuple[str, ...] | None, limit: int
    ) -> list[InboxRow]:
        rows = sorted(
            (r for r in self.s.inbox if r.user_id == user_id),
            key=lambda r: (r.created_at.isoformat(), str(r.id)),
            reverse=True,
        )
        return [r for r in rows if after is None or (r.created_at.isoformat(), str(r.id)) < after][:limit]

    async def upsert_device(self, user_id: uuid.UUID, platform: str, token: str) -> DeviceRow:
        existing = self.s.devices.get((user_id, token))
        row = DeviceRow(
            existing.id if existing else uuid.uuid4(),
            user_id,
            platform,
            existing.created_at if existing else datetime.now(UTC),
        )
        self.s.devices[(user_id, token)] = row
        return row

    async def lock_progress(self, booking_id: str) -> int:
        return self.s.progress.setdefault(booking_id, 0)

    async def set_progress(self, booking_id: str, version: int) -> None:
        self.s.progress[booking_id] = version

    async def park(self, booking_id: str, version: int, topic: str, payload: bytes) -> None:
        self.s.parked.setdefault((booking_id, version), (topic, payload))

    async def take_parked(self, booking_id: str, version: int) -> tuple[str, bytes] | None:
        return self.s.parked.pop((booking_id, version), None)

    async def stale_parked(self, parked_before: datetime, limit: int = 50) -> list[tuple[str, int]]:
        first: dict[str, int] = {}
        for booking_id, version in sorted(self.s.parked):
            first.setdefault(booking_id, version)
        return list(first.items())[:limit]  # the fake does not keep parking times: every parked one is stale

    async def schedule_reminders(self, n: BookingNotice, offsets: tuple[int, ...], now: datetime) -> None:
        for offset in offsets:
            rid = uuid.uuid5(n.event_id, f"reminder-{offset}")
            due = reminder_due(n.start, offset)
            self.s.reminders.setdefault(
                rid,
                {
                    "booking_id": n.booking_id,
                    "offset": offset,
                    "due": due,
                    "state": "PENDING" if due > now else "DROPPED",
                    "notice": n,
                },
            )

    async def move_reminders(self, booking_id: str, start: datetime, end: datetime, now: datetime) -> None:
        for r in self.s.reminders.values():
            if r["booking_id"] == booking_id:
                r["due"] = reminder_due(start, r["offset"])
                r["state"] = "PENDING" if r["due"] > now else "DROPPED"
                r["notice"] = replace(r["notice"], start=start, end=end)

    async def drop_reminders(self, booking_id: str) -> None:
        for r in self.s.reminders.values():
            if r["booking_id"] == booking_id and r["state"] == "PENDING":
                r["state"] = "DROPPED"

    async def claim_due_reminder(self, now: datetime) -> Reminder | None:
        due = sorted(
            (
                (rid, r)
                for rid, r in self.s.reminders.items()
                if r["state"] == "PENDING" and r["due"] <= now and r["notice"].start > now
            ),
            key=lambda x: x[1]["due"],
        )
        if not due:
            return None
        rid, r = due[0]
        return Reminder(
            rid,
            r["booking_id"],
            r["offset"],
            r["due"],
            replace(r["notice"], event_id=rid, kind="reminder", occurred_at=now),
        )

    async def mark_reminder_sent(self, reminder_id: uuid.UUID, now: datetime) -> None:
        self.s.reminders[reminder_id]["state"] = "SENT"

    async def preferences(self, user_id: uuid.UUID) -> Preferences:
        return self.s.preferences.get(user_id, Preferences())

    async def update_preferences(self, user_id: uuid.UUID, changes: dict[str, bool]) -> Preferences:
        self.s.preferences[user_id] = replace(self.s.preferences.get(user_id, Preferences()), **changes)
        return self.s.preferences[user_id]


def notif_uow(store: NotifStore | None = None) -> FakeUnitOfWork[NotifStore, FakeNotifRepository]:
    return FakeUnitOfWork(store or NotifStore(), FakeNotifRepository)


class RecordingMailer:
    """The Mailer port: keeps what it sent; fails the next ``failures`` sends."""

    def __init__(self, failures: int = 0) -> None:
        self.sent: list[BookingNotice] = []
        self.failures = failures

    async def send(self, notice: BookingNotice) -> None:
        if self.failures:
            self.failures -= 1
            raise ConnectionError("smtp down")
        self.sent.append(notice)


class LiveHub:
    """FeedSubscribe + FeedPublisher in one process (what RedisFanout does across replicas)."""

    def __init__(self) -> None:
        self.queues: dict[uuid.UUID, set[asyncio.Queue[bytes]]] = {}
        self.subscribed = asyncio.Event()

    async def subscribe(
        self, clinic_id: uuid.UUID
    ) -> tuple[asyncio.Queue[bytes], Callable[[], Awaitable[None]]]:
        q: asyncio.Queue[bytes] = asyncio.Queue()
        self.queues.setdefault(clinic_id, set()).add(q)
        self.subscribed.set()

        async def unsubscribe() -> None:
            self.queues[clinic_id].discard(q)

        return q, unsubscribe

    async def publish(self, clinic_id: uuid.UUID, row: FeedRow) -> None:
        self.send(clinic_id, row.payload)

    def send(self, clinic_id: uuid.UUID, payload: bytes) -> None:
        for q in self.queues.get(clinic_id, ()):
            q.put_nowait(payload)

    async def run(self) -> None:
        """Nothing to receive in one process: idle until cancelled."""
        await asyncio.Event().wait()

    def subscribers(self, clinic_id: uuid.UUID) -> int:
        return len(self.queues.get(clinic_id, ()))


if TYPE_CHECKING:  # mypy checks that the fakes implement the ports (make lint)
    from notif_worker.ports import LiveFanout, Mailer, UnitOfWork

    _uow: UnitOfWork = notif_uow()
    _mailer: Mailer = RecordingMailer()
    _fanout: LiveFanout = LiveHub()
