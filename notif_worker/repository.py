"""notif schema: deliveries (exactly once per event, channel, recipient), clinic feed, inbox, devices."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import datetime

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    DateTime,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    Uuid,
    func,
    select,
    text,
    update,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from notif_worker.domain import DeviceRow, FeedRace, FeedRow, InboxRow

SCHEMA = "notif"
metadata = MetaData(schema=SCHEMA)

deliveries = Table(
    "deliveries", metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("event_id", Uuid, nullable=False),
    Column("channel", String(16), nullable=False),
    Column("recipient", String(254), nullable=False),
    Column("status", String(16), nullable=False),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("last_error", Text),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("delivered_at", DateTime(timezone=True)),
)
clinic_events = Table(
    "clinic_events", metadata,
    Column("clinic_id", Uuid, primary_key=True),
    Column("cursor", BigInteger, primary_key=True),
    Column("event_id", Uuid, nullable=False, unique=True),
    Column("type", String(64), nullable=False),
    Column("payload", LargeBinary, nullable=False),
    Column("occurred_at", DateTime(timezone=True), nullable=False),
)
inbox = Table(
    "inbox", metadata,
    Column("id", Uuid, primary_key=True),
    Column("user_id", Uuid, nullable=False),
    Column("event_id", Uuid, nullable=False),
    Column("title", String(200), nullable=False),
    Column("body", Text, nullable=False),
    Column("data", JSON, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("read_at", DateTime(timezone=True)),
)
devices = Table(
    "devices", metadata,
    Column("id", Uuid, primary_key=True),
    Column("user_id", Uuid, nullable=False),
    Column("platform", String(16), nullable=False),
    Column("token", String(4096), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

NEXT_CURSOR = text(
    "INSERT INTO clinic_cursors (clinic_id, last_cursor) VALUES (:clinic, 1)"
    " ON CONFLICT (clinic_id) DO UPDATE SET last_cursor = clinic_cursors.last_cursor + 1"
    " RETURNING last_cursor"
)


class NotifRepository:
    def __init__(self, session: AsyncSession | AsyncConnection) -> None:
        self.s = session

    async def claim_delivery(self, event_id: uuid.UUID, channel: str, recipient: str) -> bool:
        """True when this (event, channel, recipient) still needs delivering (new, or a failed try);
        False when it was already delivered — a redelivered event sends nothing twice."""
        stmt = pg_insert(deliveries).values(event_id=event_id, channel=channel, recipient=recipient,
                                            status="pending")
        query = stmt.on_conflict_do_nothing(constraint="deliveries_once").returning(deliveries.c.id)
        if (await self.s.execute(query)).first() is not None:
            return True
        q = select(deliveries.c.status).where(deliveries.c.event_id == event_id, deliveries.c.channel == channel,
                                             deliveries.c.recipient == recipient).with_for_update()
        return (await self.s.execute(q)).scalar_one() != "delivered"

    async def finish_delivery(self, event_id: uuid.UUID, channel: str, recipient: str, *, ok: bool,
                              error: str | None = None) -> None:
        await self.s.execute(
            update(deliveries)
            .where(deliveries.c.event_id == event_id, deliveries.c.channel == channel,
                   deliveries.c.recipient == recipient)
            .values(status="delivered" if ok else "failed", attempts=deliveries.c.attempts + 1,
                    last_error=error, delivered_at=func.now() if ok else None))

    async def add_clinic_event(self, clinic_id: uuid.UUID, event_id: uuid.UUID, type_: str,
                               occurred_at: datetime, payload_for: Callable[[int], bytes]) -> FeedRow | None:
        """Append to the clinic's feed with the next per-clinic cursor; None if already there.
        ``payload_for(cursor) -> bytes`` serialises the event with its cursor."""
        existing = (await self.s.execute(select(clinic_events.c.cursor).where(
            clinic_events.c.event_id == event_id))).first()
        if existing:
            return None
        cursor = (await self.s.execute(NEXT_CURSOR, {"clinic": clinic_id})).scalar_one()  # row-locks the clinic
        payload = payload_for(cursor)
        stmt = pg_insert(clinic_events).values(clinic_id=clinic_id, cursor=cursor, event_id=event_id, type=type_,
                                               payload=payload, occurred_at=occurred_at)
        query = stmt.on_conflict_do_nothing(index_elements=["event_id"]).returning(clinic_events.c.cursor)
        if (await self.s.execute(query)).first() is None:  # a concurrent worker won; our cursor rolls back
            raise FeedRace()
        return FeedRow(cursor, payload)

    async def clinic_events_after(self, clinic_id: uuid.UUID, after: int, limit: int) -> list[FeedRow]:
        q = (select(clinic_events.c.cursor, clinic_events.c.payload)
             .where(clinic_events.c.clinic_id == clinic_id, clinic_events.c.cursor > after)
             .order_by(clinic_events.c.cursor).limit(limit))
        return [FeedRow(r.cursor, r.payload) for r in await self.s.execute(q)]

    async def add_inbox(self, row: InboxRow) -> bool:
        stmt = pg_insert(inbox).values(id=row.id, user_id=row.user_id, event_id=row.event_id, title=row.title,
                                       body=row.body, data=row.data, created_at=row.created_at)
        query = stmt.on_conflict_do_nothing(constraint="inbox_once").returning(inbox.c.id)
        return (await self.s.execute(query)).first() is not None

    async def list_inbox(self, user_id: uuid.UUID, after: tuple[str, ...] | None, limit: int) -> list[InboxRow]:
        q = select(inbox).where(inbox.c.user_id == user_id).order_by(inbox.c.created_at.desc(), inbox.c.id.desc())
        if after:
            q = q.where(func.row(inbox.c.created_at, inbox.c.id) < func.row(
                datetime.fromisoformat(after[0]), uuid.UUID(after[1])))
        rows = await self.s.execute(q.limit(limit))
        return [InboxRow(r.id, r.user_id, r.event_id, r.title, r.body, dict(r.data), r.created_at) for r in rows]

    async def upsert_device(self, user_id: uuid.UUID, platform: str, token: str) -> DeviceRow:
        stmt = pg_insert(devices).values(id=uuid.uuid4(), user_id=user_id, platform=platform, token=token)
        stmt = stmt.on_conflict_do_update(constraint="devices_once", set_={"platform": stmt.excluded.platform})
        r = (await self.s.execute(stmt.returning(devices.c.id, devices.c.user_id, devices.c.platform,
                                                 devices.c.created_at))).one()
        return DeviceRow(r.id, r.user_id, r.platform, r.created_at)

