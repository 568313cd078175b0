"""In-memory NotifRepository (notif_worker.ports), a recording mailer and a live-feed hub."""

from __future__ import annotations

import asyncio
import copy
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from notif_worker.domain import BookingNotice, DeviceRow, FeedRow, InboxRow
from tests.unit.fakes import FakeUnitOfWork


@dataclass
class NotifStore:
    deliveries: dict[tuple[uuid.UUID, str, str], dict[str, Any]] = field(default_factory=dict)
    feed: dict[uuid.UUID, list[tuple[uuid.UUID, FeedRow]]] = field(default_factory=dict)  # clinic → (event, row)
    inbox: list[InboxRow] = field(default_factory=list)
    devices: dict[tuple[uuid.UUID, str], DeviceRow] = field(default_factory=dict)


class FakeNotifRepository:
    def __init__(self, store: NotifStore) -> None:
        self.s = store

    async def claim_delivery(self, event_id: uuid.UUID, channel: str, recipient: str) -> bool:
        row = self.s.deliveries.setdefault((event_id, channel, recipient), {"status": "pending", "attempts": 0})
        return row["status"] != "delivered"

    async def finish_delivery(self, event_id: uuid.UUID, channel: str, recipient: str, *, ok: bool,
                              error: str | None = None) -> None:
        row = self.s.deliveries[(event_id, channel, recipient)]
        row.update(status="delivered" if ok else "failed", attempts=int(row["attempts"]) + 1,
                   last_error=error)

    async def add_clinic_event(self, clinic_id: uuid.UUID, event_id: uuid.UUID, type_: str,
                               occurred_at: datetime, payload_for: Callable[[int], bytes]) -> FeedRow | None:
        if any(e == event_id for rows in self.s.feed.values() for e, _ in rows):
            return None
        rows = self.s.feed.setdefault(clinic_id, [])
        cursor = len(rows) + 1
        row = FeedRow(cursor, payload_for(cursor))
        rows.append((event_id, row))
        return row

    async def clinic_events_after(self, clinic_id: uuid.UUID, after: int, limit: int) -> list[FeedRow]:
        return [r for _, r in self.s.feed.get(clinic_id, []) if r.cursor > after][:limit]

    async def add_inbox(self, row: InboxRow) -> bool:
        if any(r.user_id == row.user_id and r.event_id == row.event_id for r in self.s.inbox):
            return False
        self.s.inbox.append(copy.deepcopy(row))
        return True

    async def list_inbox(self, user_id: uuid.UUID, after: tuple[str, ...] | None, limit: int) -> list[InboxRow]:
        rows = sorted((r for r in self.s.inbox if r.user_id == user_id),
                      key=lambda r: (r.created_at.isoformat(), str(r.id)), reverse=True)
        return [r for r in rows if after is None or (r.created_at.isoformat(), str(r.id)) < after][:limit]

    async def upsert_device(self, user_id: uuid.UUID, platform: str, token: str) -> DeviceRow:
        existing = self.s.devices.get((user_id, token))
        row = DeviceRow(existing.id if existing else uuid.uuid4(), user_id, platform,
                        existing.created_at if existing else datetime.now(UTC))
        self.s.devices[(user_id, token)] = row
        return row


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

    async def subscribe(self, clinic_id: uuid.UUID) -> tuple[asyncio.Queue[bytes], Callable[[], Awaitable[None]]]:
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
