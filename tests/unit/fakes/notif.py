"""In-memory NotifRepository (notif_worker.ports), a recording mailer and a live-feed hub."""

from __future__ import annotations

import asyncio
import copy
import hashlib
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
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
from notif_worker.domain.sms import ClinicSms, SmsClaim, SmsPhone, StaleText
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
    sms_phones: dict[uuid.UUID, SmsPhone] = field(default_factory=dict)
    clinic_sms: dict[uuid.UUID, ClinicSms] = field(default_factory=dict)
    sms_usage: dict[tuple[uuid.UUID, str], int] = field(default_factory=dict)
    erased: dict[uuid.UUID, tuple[uuid.UUID, list[str]]] = field(
        default_factory=dict
    )  # user → event, digests
    erased_done: set[uuid.UUID] = field(default_factory=set)  # users whose erasure is done


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
                if r["booking_id"] != n.booking_id:
                    continue
                if r["notice"].start != n.start:
                    r["due"] = reminder_due(n.start, r["offset"])
                    r["state"] = "PENDING" if r["due"] > now else "DROPPED"
                # what the message says follows the move (a staff move to another vet or room)
                r["notice"] = replace(
                    r["notice"],
                    start=n.start,
                    end=n.end,
                    provider_id=n.provider_id,
                    provider_name=n.provider_name,
                    resources=n.resources,
                )
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

    # -- SMS ------------------------------------------------------------------------------------------
    async def sms_phone(self, user_id: uuid.UUID) -> SmsPhone | None:
        return self.store.sms_phones.get(user_id)

    async def save_sms_phone(self, p: SmsPhone) -> None:
        self.store.sms_phones[p.user_id] = p

    async def set_phone_opted_out(self, phone: str, opted_out: bool) -> int:
        was, now = ("VERIFIED", "OPTED_OUT") if opted_out else ("OPTED_OUT", "VERIFIED")
        changed = 0
        for uid, p in list(self.store.sms_phones.items()):
            if p.phone == phone and p.state == was:
                self.store.sms_phones[uid] = replace(p, state=now)  # type: ignore[arg-type]
                changed += 1
        return changed

    async def clinic_sms(self, clinic_id: uuid.UUID) -> ClinicSms | None:
        return self.store.clinic_sms.get(clinic_id)

    async def set_clinic_sms(self, clinic_id: uuid.UUID, s: ClinicSms) -> None:
        self.store.clinic_sms[clinic_id] = s

    async def sms_used(self, clinic_id: uuid.UUID, month: str) -> int:
        return self.store.sms_usage.get((clinic_id, month), 0)

    async def claim_sms(
        self,
        key: uuid.UUID,
        phone: str,
        body: str,
        clinic_id: uuid.UUID,
        *,
        month: str,
        cap: int,
        owner_limit: int,
        since: datetime,
        now: datetime,
    ) -> SmsClaim:
        s = self.store
        row = s.deliveries.get((key, "sms", phone))
        if row is not None:
            return "busy" if row["status"] in ("sending", "failed") else "done"
        recent = sum(
            1
            for (k, ch, to), r in s.deliveries.items()
            if ch == "sms"
            and to == phone
            and r["status"] in ("sending", "delivered")
            and r["claimed_at"] > since
        )
        s.deliveries[(key, "sms", phone)] = {
            "status": "sending",
            "attempts": 0,
            "last_error": None,
            "claimed_at": now,
            "created_at": now,
            "body": body,
        }
        refused: SmsClaim | None = None
        if recent >= owner_limit:
            refused = "limited"
        elif s.sms_usage.get((clinic_id, month), 0) >= cap:
            refused = "capped"
        else:
            s.sms_usage[(clinic_id, month)] = s.sms_usage.get((clinic_id, month), 0) + 1
        if refused is not None:
            await self.refuse_delivery(key, "sms", phone, refused)
            return refused
        return "send"

    async def renew_sms_claim(self, key: uuid.UUID, phone: str, held: datetime, now: datetime) -> bool:
        row = self.store.deliveries.get((key, "sms", phone))
        if row is None or row["claimed_at"] != held or row["status"] not in ("sending", "failed"):
            return False
        row.update(status="sending", claimed_at=now)
        return True

    async def sms_outcome_unknown(self, key: uuid.UUID, phone: str, error: str) -> None:
        row = self.store.deliveries.get((key, "sms", phone))
        if row is not None and row["status"] == "sending":
            row.update(attempts=int(row["attempts"]) + 1, last_error=error)

    async def stale_texts(self, claimed_before: datetime, limit: int = 20) -> list[StaleText]:
        rows = sorted(
            (
                (r["claimed_at"], k, to, r["body"], r["created_at"])
                for (k, ch, to), r in self.store.deliveries.items()
                if ch == "sms"
                and r["status"] in ("sending", "failed")
                and r["claimed_at"] < claimed_before
                and r["attempts"] < 5
            ),
            key=lambda x: x[0],
        )[:limit]
        return [StaleText(k, to, body, at, min(first, at)) for at, k, to, body, first in rows]

    async def refuse_delivery(self, event_id: uuid.UUID, channel: str, recipient: str, error: str) -> None:
        row = self.store.deliveries.get((event_id, channel, recipient))
        if row is not None:
            row.update(status="refused", attempts=int(row["attempts"]) + 1, last_error=error)

    async def mark_erasing(self, user_id: uuid.UUID, event_id: uuid.UUID, digests: list[str]) -> None:
        self.store.erased.setdefault(user_id, (event_id, list(digests)))

    async def record_erased(self, user_id: uuid.UUID, at: datetime) -> bool:
        if user_id not in self.store.erased or user_id in self.store.erased_done:
            return False
        self.store.erased_done.add(user_id)
        return True

    async def erased_digests(self, user_id: uuid.UUID) -> list[str] | None:
        found = self.store.erased.get(user_id)
        return list(found[1]) if found else None

    async def erase_user(self, user_id: uuid.UUID, digests: list[str]) -> None:
        self.store.inbox = [r for r in self.store.inbox if r.user_id != user_id]
        for key in [k for k, d in self.store.devices.items() if d.user_id == user_id]:
            del self.store.devices[key]
        self.store.preferences.pop(user_id, None)
        self.store.feed_tokens.pop(user_id, None)
        phone = self.store.sms_phones.pop(user_id, None)
        for booking_id in [b for b, n in self.store.bookings.items() if n.owner_user_id == user_id]:
            del self.store.bookings[booking_id]
        for claim in list(self.store.deliveries):
            event_id, channel, recipient = claim
            mine = channel == "email" and hashlib.sha256(recipient.lower().encode()).hexdigest() in digests
            texted = phone is not None and channel == "sms" and recipient == phone.phone
            if mine or texted or (channel == "push" and recipient == str(user_id)):
                self.store.deliveries[(event_id, channel, f"erased:{len(self.store.deliveries)}")] = (
                    self.store.deliveries.pop(claim)
                )

    async def user_export(self, user_id: uuid.UUID, email: str) -> dict[str, Any]:
        return {
            "inbox": [
                {"title": r.title, "body": r.body, "created_at": r.created_at.isoformat()}
                for r in self.store.inbox
                if r.user_id == user_id
            ],
            "deliveries": [
                {"event_id": str(e), "channel": c, "recipient": r}
                for (e, c, r) in self.store.deliveries
                if (c == "email" and r == email) or (c == "push" and r == str(user_id))
            ],
            "devices": [
                {"id": str(d.id), "platform": d.platform}
                for d in self.store.devices.values()
                if d.user_id == user_id
            ],
            "preferences": None,
            "calendar_feed": None,
        }


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


class RecordingSms:
    """The SmsSender port: keeps what it sent (number, body, sid, at); ``opted_out`` numbers answer
    PhoneOptedOut (Twilio 21610), ``invalid`` ones MessageRefused (21211); fails the next ``failures``."""

    timeout = 10.0

    def __init__(self, failures: int = 0, secret: str = "token") -> None:
        self.sent: list[tuple[str, str, str, datetime]] = []
        self.failures = failures
        self.opted_out: set[str] = set()
        self.invalid: set[str] = set()
        self.secret = secret
        self.die_after_send = False  # the provider took it, then the worker "stopped"
        self.clock: Callable[[], datetime] = lambda: datetime.now(UTC)  # the provider's clock

    async def send(self, to: str, body: str) -> str:
        from notif_worker.domain import MessageRefused, PhoneOptedOut

        if self.failures > 0:
            self.failures -= 1
            raise ConnectionError("provider unavailable")
        if to in self.opted_out:
            raise PhoneOptedOut("twilio 21610: Attempt to send to unsubscribed recipient")
        if to in self.invalid:
            raise MessageRefused(f"twilio 21211: The 'To' number {to} is not a valid phone number.")
        sid = f"SM{uuid.uuid4().hex}"
        self.sent.append((to, body, sid, self.clock()))
        if self.die_after_send:
            raise SystemExit("worker killed after the provider took the text")
        return sid

    async def sent_since(self, to: str, body: str, since: datetime) -> str | None:
        for t, b, sid, at in self.sent:
            if t == to and b == body and at >= since - timedelta(seconds=60):
                return sid
        return None

    def valid_webhook(self, url: str, params: dict[str, str], signature: str) -> bool:
        return signature == f"{self.secret}:{url}:{params.get('From', '')}"

    def texts_to(self, to: str) -> list[str]:
        return [b for t, b, _, _ in self.sent if t == to]


def booking_notice(start: datetime, **changes: object) -> BookingNotice:
    """A booking.created notice of a 30-minute check-up at Happy Paws (Berlin) for Olga's dog Rex,
    starting at ``start``; ``changes`` replace any field."""
    n = BookingNotice(
        event_id=uuid.uuid4(),
        occurred_at=datetime(2026, 3, 1, 12, tzinfo=UTC),
        booking_id=str(uuid.uuid4()),
        clinic_id=uuid.uuid4(),
        clinic_name="Happy Paws",
        clinic_time_zone="Europe/Berlin",
        service_name="Check-up",
        start=start.astimezone(UTC),
        end=(start + timedelta(minutes=30)).astimezone(UTC),
        pet_name="Rex",
        pet_species="SPECIES_DOG",
        owner_user_id=uuid.uuid4(),
        owner_email="olga@example.test",
        owner_name="Olga",
        amount_minor=4550,
        currency="EUR",
        clinic_address="Torstraße 1, 10119 Berlin",
    )
    return replace(n, **changes)  # type: ignore[arg-type]
