"""Queries about one owner across booking's tables: the data export and the erasure of a deleted
account (pets, reservations and bookings anonymised; the bookings' outbox rows dropped), and the
record of processed account.deleted events."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import delete, exists, func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert

from booking_svc.adapters.repository.rows import Queries
from booking_svc.adapters.tables import bookings, outbox, pets, processed_events, reservations


def _json(row: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in row._mapping.items():
        if isinstance(value, uuid.UUID):
            value = str(value)
        elif hasattr(value, "isoformat"):
            value = value.isoformat()
        elif hasattr(value, "lower") and hasattr(value, "upper") and not isinstance(value, str):  # a range
            value = {"start": value.lower.isoformat(), "end": value.upper.isoformat()}
        out[key] = value
    return out


class OwnerQueries(Queries):
    async def event_processed(self, event_id: uuid.UUID) -> bool:
        q = select(exists().where(processed_events.c.event_id == event_id))
        return bool((await self.session.execute(q)).scalar())

    async def record_processed(self, event_id: uuid.UUID, topic: str, at: datetime) -> bool:
        """False when it was already recorded (a concurrent or earlier delivery)."""
        stmt = pg_insert(processed_events).values(event_id=event_id, topic=topic, processed_at=at)
        inserted = await self.session.execute(
            stmt.on_conflict_do_nothing(index_elements=["event_id"]).returning(processed_events.c.event_id)
        )
        return inserted.first() is not None

    async def owner_future_bookings(self, owner: uuid.UUID, now: datetime) -> list[uuid.UUID]:
        q = (
            select(bookings.c.id)
            .where(
                bookings.c.owner_user_id == owner,
                bookings.c.state == "CONFIRMED",
                bookings.c.start_time > now,
            )
            .order_by(bookings.c.start_time, bookings.c.id)
        )
        return [r.id for r in await self.session.execute(q)]

    async def owner_held_reservations(self, owner: uuid.UUID) -> list[uuid.UUID]:
        q = select(reservations.c.lock_id).where(
            reservations.c.owner_user_id == owner, reservations.c.state == "HELD"
        )
        return [r.lock_id for r in await self.session.execute(q)]

    async def owner_unsent_events(self, owner: uuid.UUID) -> int:
        keys = select(func.cast(bookings.c.id, outbox.c.key.type)).where(bookings.c.owner_user_id == owner)
        q = select(func.count()).select_from(outbox).where(outbox.c.sent_at.is_(None), outbox.c.key.in_(keys))
        return int((await self.session.execute(q)).scalar() or 0)

    async def erase_owner(self, owner: uuid.UUID, at: datetime) -> None:
        await self.session.execute(
            update(pets)
            .where(pets.c.owner_user_id == owner)
            .values(
                name="",
                breed="",
                birth_date=None,
                weight_grams=None,
                notes="",
                archived_at=func.coalesce(pets.c.archived_at, at),
                version=pets.c.version + 1,
            )
        )
        await self.session.execute(
            update(reservations)
            .where(reservations.c.owner_user_id == owner)
            .values(owner_email="", owner_name="")
        )
        await self.session.execute(
            update(bookings).where(bookings.c.owner_user_id == owner).values(cancel_reason="")
        )
        keys = select(func.cast(bookings.c.id, outbox.c.key.type)).where(bookings.c.owner_user_id == owner)
        await self.session.execute(
            delete(outbox).where(outbox.c.sent_at.is_not(None), outbox.c.key.in_(keys))
        )

    async def owner_export(self, owner: uuid.UUID) -> dict[str, list[dict[str, Any]]]:
        p = await self.session.execute(
            select(pets).where(pets.c.owner_user_id == owner).order_by(pets.c.created_at, pets.c.id)
        )
        r = await self.session.execute(
            select(reservations)
            .where(reservations.c.owner_user_id == owner)
            .order_by(reservations.c.created_at, reservations.c.lock_id)
        )
        b = await self.session.execute(
            select(bookings)
            .where(bookings.c.owner_user_id == owner)
            .order_by(bookings.c.created_at, bookings.c.id)
        )
        return {
            "pets": [_json(row) for row in p],
            "reservations": [_json(row) for row in r],
            "bookings": [_json(row) for row in b],
        }
