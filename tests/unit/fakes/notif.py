"""In-memory NotifRepository (notif_worker.ports), a recording mailer and a live-feed hub."""

from __future__ import annotations

import asyncio
import copy
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from notif_worker.adapters.codecs import cursor_field
from notif_worker.domain import (
    BookingNotice,
    Device,
    DeviceGone,
    DeviceRow,
    FeedRow,
    InboxRow,
    Preferences,
    QuietHours,
    Recorded,
    Reminder,
    ReminderChange,
    reminder_due,
)
from tests.unit.fakes import FakeUnitOfWork


@dataclass
class NotifStore:
    deliveries: dict[tuple[uuid.UUID, str, str], dict[str, Any]] = field(default_factory=dict)
    feed: dict[uuid.UUID, list[tuple[uuid.UUID, FeedRow]]] = field(
        default_factory=dict
    )  # clinic → (event, row)
    inbox: list[InboxRow] = field(default_factory=list)
    devices: dict[tuple[uuid.UUID, str], DeviceRow] = field(default_factory=dict)
    cursors: dict[uuid.UUID, int] = field(default_factory=dict)  # clinic → last cursor taken
    progress: dict[str, int] = field(default_factory=dict)  # booking → last version applied
    parked: dict[tuple[str, int], tuple[str, bytes]] = field(default_factory=dict)
    parked_at: dict[tuple[str, int], datetime] = field(default_factory=dict)
    reminders: dict[uuid.UUID, dict[str, Any]] = field(default_factory=dict)
    preferences: dict[uuid.UUID, Preferences] = field(default_factory=dict)
    reminder_locks: set[uuid.UUID] = field(default_factory=set)  # claimed by an open unit of work
    device_tokens: dict[uuid.UUID, str] = field(default_factory=dict)  # device id → token
    bookings: dict[str, BookingNotice] = field(default_factory=dict)  # the owners' calendars
    feed_tokens: dict[uuid.UUID, tuple[bytes, datetime]] = field(default_factory=dict)  # user → hash
    quiet: dict[uuid.UUID, QuietHours] = field(default_factory=dict)


class FakeNotifRepository:
    def __init__(self, store: NotifStore) -> None:
        self.store = store
        self.held: set[uuid.UUID] = set()  # reminders this unit of work locked (FOR UPDATE)

    def release(self) -> None:
        """The unit of work ended: its row locks go (FakeUnitOfWork calls it)."""
        self.store.reminder_locks -= self.held
        self.held.clear()

    def _claim(self, event_id: uuid.UUID, channel: str, recipient: str) -> bool:
        """True when this (event, channel, recipient) still needs delivering (new, or a failed try)."""
        row = self.store.deliveries.setdefault(
            (event_id, channel, recipient), {"status": "pending", "attempts": 0, "last_error": None}
        )
        return row["status"] != "delivered"

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
        s = self.store
        applied = s.progress.get(n.booking_id, 0)
        if applied == n.version - 1:
            applied = s.progress[n.booking_id] = n.version
        else:
            s.progress.setdefault(n.booking_id, 0)
        if applied < n.version:
            if (n.booking_id, n.version) not in s.parked:
                s.parked[(n.booking_id, n.version)] = park
                s.parked_at[(n.booking_id, n.version)] = now
            return Recorded("parked", False, None, None)
        parked = None
        if applied == n.version:
            parked = s.parked.pop((n.booking_id, n.version + 1), None)
            s.parked_at.pop((n.booking_id, n.version + 1), None)
            self._change_reminders(n, reminders, now)
        if push is not None and self._claim(n.event_id, "push", str(n.owner_user_id)):
            row = s.deliveries[(n.event_id, "push", str(n.owner_user_id))]
            row.update(status="delivered", attempts=int(row["attempts"]) + 1, last_error=None)
            await self.add_inbox(push)
        devices: list[Device] = []
        if push is not None:
            devices = [
                d
                for d in await self.devices_of(n.owner_user_id)
                if self._claim(n.event_id, "device", str(d.id))
            ]
        if applied == n.version:
            last = s.bookings.get(n.booking_id)
            if last is None or last.version < n.version:
                s.bookings[n.booking_id] = n
        email_due = email and self._claim(n.event_id, "email", n.owner_email)
        feed = None
        if not any(e == n.event_id for rows in s.feed.values() for e, _ in rows):
            s.cursors[n.clinic_id] = cursor = s.cursors.get(n.clinic_id, 0) + 1
            feed = FeedRow(cursor, cursor_field(cursor) + feed_tail)
            s.feed.setdefault(n.clinic_id, []).append((n.event_id, feed))
        return Recorded(
            "applied" if applied == n.version else "copy", email_due, feed, parked, tuple(devices)
        )

    def _change_reminders(self, n: BookingNotice, change: ReminderChange, now: datetime) -> None:
        if change is None:
            return
        if change[0] == "schedule":
            for offset in change[1]:
                rid = uuid.uuid5(n.event_id, f"reminder-{offset}")
                if any(
                    r["booking_id"] == n.booking_id and r["offset"] == offset
                    for r in self.store.reminders.values()
                ):
                    continue  # one reminder per (booking, offset)
                due = reminder_due(n.start, offset)
                self.store.reminders.setdefault(
                    rid,
                    {
                        "booking_id": n.booking_id,
                        "offset": offset,
                        "due": due,
                        "state": "PENDING" if due > now else "DROPPED",
                        "notice": n,
                    },
                )
        elif change[0] == "move":
            for r in self.store.reminders.values():
                if r["booking_id"] == n.booking_id and r["notice"].start != n.start:
                    r["due"] = reminder_due(n.start, r["offset"])
                    r["state"] = "PENDING" if r["due"] > now else "DROPPED"
                    r["notice"] = replace(r["notice"], start=n.start, end=n.end)
        else:
            for r in self.store.reminders.values():
                if r["booking_id"] == n.booking_id and r["state"] == "PENDING":
                    r["state"] = "DROPPED"

    async def claim_delivery(self, event_id: uuid.UUID, channel: str, recipient: str) -> bool:
        row = self.store.deliveries.get((event_id, channel, recipient))
        if row is not None and row["status"] != "failed":
            return False
        self._claim(event_id, channel, recipient)
        self.store.deliveries[(event_id, channel, recipient)]["status"] = "pending"
        return True

    async def finish_delivery(
        self, event_id: uuid.UUID, channel: str, recipient: str, *, ok: bool, error: str | None = None
    ) -> None:
        row = self.store.deliveries.get((event_id, channel, recipient))
        if row is None:  # an UPDATE of no row
            return
        row.update(
            status="delivered" if ok else "failed", attempts=int(row["attempts"]) + 1, last_error=error
        )

    async def parked_due(self, parked_before: datetime, limit: int = 50) -> list[tuple[str, int]]:
        first: dict[str, int] = {}
        for booking_id, version in sorted(self.store.parked):
            if booking_id in first:
                continue
            applied = self.store.progress.get(booking_id, 0)
            if self.store.parked_at[(booking_id, version)] < parked_before or version <= applied + 1:
                first[booking_id] = version
        return list(first.items())[:limit]

    async def release_parked(self, booking_id: str, version: int) -> tuple[str, bytes] | None:
        if booking_id not in self.store.progress or (booking_id, version) not in self.store.parked:
            return None
        self.store.progress[booking_id] = max(self.store.progress[booking_id], version - 1)
        self.store.parked_at.pop((booking_id, version), None)
        return self.store.parked.pop((booking_id, version), None)

    async def clinic_events_after(self, clinic_id: uuid.UUID, after: int, limit: int) -> list[FeedRow]:
        return sorted(
            (r for _, r in self.store.feed.get(clinic_id, []) if r.cursor > after), key=lambda r: r.cursor
        )[:limit]

    async def add_inbox(self, row: InboxRow) -> bool:
        if any(r.user_id == row.user_id and r.event_id == row.event_id for r in self.store.inbox):
            return False
        self.store.inbox.append(copy.deepcopy(row))
        return True

    async def list_inbox(
        self, user_id: uuid.UUID, after: tuple[str, ...] | None, limit: int
    ) -> list[InboxRow]:
        def key(r: InboxRow) -> tuple[datetime, str]:
            return (r.created_at, str(r.id))

        rows = sorted((r for r in self.store.inbox if r.user_id == user_id), key=key, reverse=True)
        if after is not None:
            cut = (datetime.fromisoformat(after[0]), str(uuid.UUID(after[1])))
            rows = [r for r in rows if key(r) < cut]
        return rows[:limit]

    async def upsert_device(self, user_id: uuid.UUID, platform: str, token: str) -> DeviceRow:
        for key in [k for k in self.store.devices if k[1] == token and k[0] != user_id]:
            self.store.device_tokens.pop(self.store.devices.pop(key).id, None)
        existing = self.store.devices.get((user_id, token))
        row = DeviceRow(
            existing.id if existing else uuid.uuid4(),
            user_id,
            platform,
            existing.created_at if existing else datetime.now(UTC),
        )
        self.store.devices[(user_id, token)] = row
        self.store.device_tokens[row.id] = token
        return row

    async def devices_of(self, user_id: uuid.UUID) -> list[Device]:
        rows = sorted(
            (d for (u, _), d in self.store.devices.items() if u == user_id), key=lambda d: d.created_at
        )
        return [Device(d.id, d.platform, self.store.device_tokens[d.id]) for d in rows]

    async def remove_device(self, device_id: uuid.UUID) -> bool:
        for key, d in list(self.store.devices.items()):
            if d.id == device_id:
                del self.store.devices[key]
                self.store.device_tokens.pop(device_id, None)
                return True
        return False

    async def claim_due_reminder(self, now: datetime) -> Reminder | None:
        due = sorted(
            (
                (rid, r)
                for rid, r in self.store.reminders.items()
                if r["state"] == "PENDING"
                and r["due"] <= now
                and r["notice"].start > now
                and rid not in self.store.reminder_locks - self.held  # SKIP LOCKED: others' locks
            ),
            key=lambda x: x[1]["due"],
        )
        if not due:
            return None
        rid, r = due[0]
        self.store.reminder_locks.add(rid)
        self.held.add(rid)
        return Reminder(
            rid,
            r["booking_id"],
            r["offset"],
            r["due"],
            replace(r["notice"], event_id=rid, kind="reminder", occurred_at=now),
        )

    async def mark_reminder_sent(self, reminder_id: uuid.UUID, now: datetime) -> None:
        self.store.reminders[reminder_id]["state"] = "SENT"

    async def defer_reminder(self, reminder_id: uuid.UUID, due_at: datetime) -> None:
        self.store.reminders[reminder_id]["due"] = due_at

    async def drop_reminder(self, reminder_id: uuid.UUID) -> None:
        self.store.reminders[reminder_id]["state"] = "DROPPED"

    async def quiet_hours(self, clinic_id: uuid.UUID) -> QuietHours | None:
        return self.store.quiet.get(clinic_id)

    async def set_quiet_hours(self, clinic_id: uuid.UUID, quiet: QuietHours) -> None:
        self.store.quiet[clinic_id] = quiet

    async def upcoming_bookings(self, user_id: uuid.UUID, now: datetime, limit: int) -> list[BookingNotice]:
        found = [
            n
            for n in self.store.bookings.values()
            if n.owner_user_id == user_id and n.end > now and n.kind in ("created", "rescheduled")
        ]
        return sorted(found, key=lambda n: (n.start, n.booking_id))[:limit]

    async def feed_owner(self, token_hash: bytes) -> uuid.UUID | None:
        return next((u for u, (h, _) in self.store.feed_tokens.items() if h == token_hash), None)

    async def create_feed_token(self, user_id: uuid.UUID, token_hash: bytes, now: datetime) -> bool:
        if user_id in self.store.feed_tokens:
            return False
        self.store.feed_tokens[user_id] = (token_hash, now)
        return True

    async def replace_feed_token(self, user_id: uuid.UUID, token_hash: bytes, now: datetime) -> None:
        self.store.feed_tokens[user_id] = (token_hash, now)

    async def revoke_feed_token(self, user_id: uuid.UUID) -> bool:
        return self.store.feed_tokens.pop(user_id, None) is not None

    async def preferences(self, user_id: uuid.UUID) -> Preferences:
        return self.store.preferences.get(user_id, Preferences())

    async def update_preferences(self, user_id: uuid.UUID, changes: dict[str, bool]) -> Preferences:
        self.store.preferences[user_id] = replace(
            self.store.preferences.get(user_id, Preferences()), **changes
        )
        return self.store.preferences[user_id]


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


class RecordingPush:
    """A DevicePush port: keeps what it sent; a token in ``gone`` is reported gone, the next
    ``failures`` sends fail transiently."""

    def __init__(
        self, platforms: frozenset[str] = frozenset({"ANDROID", "WEB", "IOS"}), failures: int = 0
    ) -> None:
        self.platforms = platforms
        self.sent: list[tuple[Device, str, str, dict[str, str]]] = []
        self.gone: set[str] = set()
        self.failures = failures

    async def send(self, device: Device, title: str, body: str, data: dict[str, str]) -> None:
        if device.token in self.gone:
            raise DeviceGone(device.token)
        if self.failures:
            self.failures -= 1
            raise ConnectionError("push provider unavailable")
        self.sent.append((device, title, body, data))


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
    from notif_worker.ports import DevicePush, LiveFanout, Mailer, UnitOfWork

    _uow: UnitOfWork = notif_uow()
    _push: DevicePush = RecordingPush()
    _mailer: Mailer = RecordingMailer()
    _fanout: LiveFanout = LiveHub()
