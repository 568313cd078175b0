"""Reservation queries: holds (ReserveSlot's one statement), their confirmation, expiry, moves, and the
live ranges availability counts."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, cast

from psycopg.errors import ExclusionViolation, UniqueViolation
from psycopg.rows import dict_row
from sqlalchemy import CursorResult, and_, insert, select, text, update
from sqlalchemy.dialects.postgresql import Range
from sqlalchemy.exc import IntegrityError

from booking_svc.adapters.repository.rows import Queries, is_violation, reservation_from_row
from booking_svc.adapters.tables import bookings, reservations
from booking_svc.domain import (
    ACTIVE_STATES,
    DuplicateRequest,
    HoldAttempt,
    Pet,
    Reservation,
    ReservationState,
    UnitTaken,
)
from petpro.db import raw_execute

ACTIVE = [s.value for s in ACTIVE_STATES]

# ReserveSlot's hot path in one statement (its own transaction on an autocommit connection).  The
# INSERT decides through the constraints: ``ON CONFLICT DO NOTHING`` with no target covers the
# exclusion constraint (no_double_booking) and the idempotency key alike, so a loser learns "taken"
# from the same round trip instead of an aborted transaction; the caller then looks closer.  Run on
# the psycopg connection itself: the profile put half of ReserveSlot's CPU in SQLAlchemy's
# per-statement work (compile, cache key, result rows, greenlet hops) for six round trips.
TRY_HOLD = """
WITH cat AS (SELECT version FROM catalog_state WHERE id = 1),
pet AS (SELECT owner_user_id FROM pets WHERE id = %(pet_id)s),
earlier AS (SELECT 1 FROM reservations WHERE owner_user_id = %(owner)s AND request_id = %(request_id)s),
free_unit AS (
  SELECT u FROM generate_series(1, %(capacity)s::int) AS u
  WHERE NOT EXISTS (
    SELECT 1 FROM reservations r
    WHERE r.service_id = %(service_id)s AND r.unit = u AND r.during && tstzrange(%(start)s, %(end)s)
      AND (r.state = 'CONFIRMED' OR (r.state = 'HELD' AND r.expires_at > %(now)s)))
  ORDER BY u LIMIT 1),
ins AS (
  INSERT INTO reservations (lock_id, owner_user_id, owner_email, owner_name, request_id, request_hash,
    service_id, clinic_id, pet_id, unit, during, state, expires_at, amount_minor, currency, created_at, updated_at)
  SELECT %(lock_id)s, %(owner)s, %(owner_email)s, %(owner_name)s, %(request_id)s, %(request_hash)s,
    %(service_id)s, %(clinic_id)s, %(pet_id)s, u, tstzrange(%(start)s, %(end)s), %(state)s, %(expires_at)s,
    %(amount_minor)s, %(currency)s, %(now)s, %(now)s
  FROM free_unit
  WHERE NOT EXISTS (SELECT 1 FROM earlier) AND (SELECT owner_user_id FROM pet) = %(owner)s
    AND (SELECT version FROM cat) = %(catalog_version)s
  ON CONFLICT DO NOTHING
  RETURNING unit)
SELECT EXISTS (SELECT 1 FROM earlier), (SELECT owner_user_id FROM pet), (SELECT u FROM free_unit),
       EXISTS (SELECT 1 FROM ins), (SELECT version FROM cat)
"""

# ConfirmBooking's common case: a live hold is confirmed and its pet and the catalog version read in
# one statement; then the booking and its outbox event (NOTIFY delivered at commit) in a second one.
CONFIRM_HELD = """
UPDATE reservations r SET state = 'CONFIRMED', payment_id = %(payment_id)s, updated_at = %(now)s
FROM pets p, catalog_state c
WHERE r.lock_id = %(lock_id)s AND r.state = 'HELD' AND r.expires_at > %(now)s AND p.id = r.pet_id AND c.id = 1
RETURNING r.lock_id, r.owner_user_id, r.owner_email, r.owner_name, r.request_id, r.request_hash, r.service_id,
  r.clinic_id, r.pet_id, r.unit, lower(r.during) AS start_time, upper(r.during) AS end_time, r.state, r.expires_at,
  r.amount_minor, r.currency, r.payment_id, r.failure_reason, r.created_at, p.owner_user_id AS pet_owner,
  p.name AS pet_name, p.species AS pet_species, p.breed AS pet_breed, p.birth_date AS pet_birth_date,
  p.created_at AS pet_created_at, c.version AS catalog_version
"""


class ReservationQueries(Queries):
    async def reservation(self, lock_id: uuid.UUID, *, for_update: bool = False) -> Reservation | None:
        q = (
            select(reservations, bookings.c.id.label("booking_id"))
            .outerjoin(bookings, bookings.c.lock_id == reservations.c.lock_id)
            .where(reservations.c.lock_id == lock_id)
        )
        if for_update:
            q = q.with_for_update(of=reservations)
        r = (await self.session.execute(q)).first()
        return reservation_from_row(r, r.booking_id) if r else None

    async def reservation_by_request(self, owner: uuid.UUID, request_id: str) -> Reservation | None:
        q = select(reservations).where(
            reservations.c.owner_user_id == owner, reservations.c.request_id == request_id
        )
        r = (await self.session.execute(q)).first()
        return await self.reservation(r.lock_id) if r else None

    async def expire_overlapping(
        self, service_id: uuid.UUID, start: datetime, end: datetime, now: datetime
    ) -> int:
        """Move expired holds on this range out of the active set, so they never block."""
        result = await self.session.execute(
            update(reservations)
            .where(
                reservations.c.service_id == service_id,
                reservations.c.state == ReservationState.HELD.value,
                reservations.c.expires_at <= now,
                reservations.c.during.overlaps(Range(start, end)),
            )
            .values(state=ReservationState.EXPIRED.value, updated_at=now)
        )
        return cast(CursorResult[Any], result).rowcount or 0

    async def taken_units(self, service_id: uuid.UUID, start: datetime, end: datetime) -> set[int]:
        q = select(reservations.c.unit).where(
            reservations.c.service_id == service_id,
            reservations.c.state.in_(ACTIVE),
            reservations.c.during.overlaps(Range(start, end)),
        )
        return {r.unit for r in await self.session.execute(q)}

    async def insert_reservation(self, res: Reservation) -> None:
        """Insert a hold.  Raises UnitTaken (exclusion constraint: the unit is held or booked for an
        overlapping range) or DuplicateRequest (same owner + request id): the transaction is then
        aborted, so this must be its last statement."""
        try:
            await self.session.execute(
                insert(reservations).values(
                    lock_id=res.lock_id,
                    owner_user_id=res.owner_user_id,
                    owner_email=res.owner_email,
                    owner_name=res.owner_name,
                    request_id=res.request_id,
                    request_hash=res.request_hash,
                    service_id=res.service_id,
                    clinic_id=res.clinic_id,
                    pet_id=res.pet_id,
                    unit=res.unit,
                    during=Range(res.start, res.end),
                    state=res.state.value,
                    expires_at=res.expires_at,
                    amount_minor=res.amount_minor,
                    currency=res.currency,
                    created_at=res.created_at,
                    updated_at=res.created_at,
                )
            )
        except IntegrityError as exc:
            if is_violation(exc, ExclusionViolation):
                raise UnitTaken from None
            if is_violation(exc, UniqueViolation, "reservations_idempotency"):
                raise DuplicateRequest from None
            raise

    async def try_hold(self, res: Reservation, capacity: int, catalog_version: int) -> HoldAttempt:
        cur = await raw_execute(
            self.session,
            TRY_HOLD,
            operation="INSERT",
            params={
                "catalog_version": catalog_version,
                "lock_id": res.lock_id,
                "owner": res.owner_user_id,
                "owner_email": res.owner_email,
                "owner_name": res.owner_name,
                "request_id": res.request_id,
                "request_hash": res.request_hash,
                "service_id": res.service_id,
                "clinic_id": res.clinic_id,
                "pet_id": res.pet_id,
                "capacity": capacity,
                "start": res.start,
                "end": res.end,
                "state": res.state.value,
                "expires_at": res.expires_at,
                "amount_minor": res.amount_minor,
                "currency": res.currency,
                "now": res.created_at,
            },
        )
        row = await cur.fetchone()
        assert row is not None  # the outer SELECT always yields one row
        earlier, pet_owner, unit, inserted, version = row
        return HoldAttempt(earlier, pet_owner, unit, inserted, int(version))

    async def try_set_state(
        self,
        lock_id: uuid.UUID,
        state: ReservationState,
        now: datetime,
        *,
        payment_id: uuid.UUID | None = None,
        failure_reason: str | None = None,
    ) -> bool:
        """Update state in a savepoint; False when re-activating would overlap another active one."""
        values: dict[str, object] = {"state": state.value, "updated_at": now}
        if payment_id is not None:
            values["payment_id"] = payment_id
        if failure_reason is not None:
            values["failure_reason"] = failure_reason
        try:
            async with self.session.begin_nested():
                await self.session.execute(
                    update(reservations).where(reservations.c.lock_id == lock_id).values(**values)
                )
        except IntegrityError as exc:
            if is_violation(exc, ExclusionViolation):
                return False
            raise
        return True

    async def confirm_held(
        self, lock_id: uuid.UUID, payment_id: uuid.UUID, now: datetime
    ) -> tuple[Reservation, Pet, int] | None:
        cur = await raw_execute(
            self.session,
            CONFIRM_HELD,
            {"lock_id": lock_id, "payment_id": payment_id, "now": now},
            operation="UPDATE",
            row_factory=dict_row,
        )
        r = await cur.fetchone()
        if r is None:
            return None
        res = Reservation(
            lock_id=r["lock_id"],
            owner_user_id=r["owner_user_id"],
            owner_email=r["owner_email"],
            owner_name=r["owner_name"],
            request_id=r["request_id"],
            request_hash=r["request_hash"],
            service_id=r["service_id"],
            clinic_id=r["clinic_id"],
            pet_id=r["pet_id"],
            unit=r["unit"],
            start=r["start_time"],
            end=r["end_time"],
            state=ReservationState(r["state"]),
            expires_at=r["expires_at"],
            amount_minor=r["amount_minor"],
            currency=r["currency"],
            payment_id=r["payment_id"],
            failure_reason=r["failure_reason"],
            created_at=r["created_at"],
        )
        pet = Pet(
            r["pet_id"],
            r["pet_owner"],
            r["pet_name"],
            r["pet_species"],
            r["pet_breed"] or None,
            r["pet_birth_date"],
            r["pet_created_at"],
        )
        return res, pet, int(r["catalog_version"])

    async def expire_due(self, now: datetime, limit: int = 500) -> list[uuid.UUID]:
        q = text(
            "UPDATE reservations SET state = 'EXPIRED', updated_at = :now WHERE lock_id IN ("
            " SELECT lock_id FROM reservations WHERE state = 'HELD' AND expires_at <= :now"
            " ORDER BY expires_at LIMIT :limit FOR UPDATE SKIP LOCKED) RETURNING lock_id"
        )
        return [r.lock_id for r in await self.session.execute(q, {"now": now, "limit": limit})]

    async def active_counts(
        self, service_id: uuid.UUID, start: datetime, end: datetime, now: datetime
    ) -> list[tuple[datetime, datetime]]:
        """Ranges of active (confirmed, or held and not expired) reservations overlapping [start, end)."""
        q = select(reservations.c.during).where(
            reservations.c.service_id == service_id,
            reservations.c.during.overlaps(Range(start, end)),
            (reservations.c.state == ReservationState.CONFIRMED.value)
            | and_(reservations.c.state == ReservationState.HELD.value, reservations.c.expires_at > now),
        )
        return [(r.during.lower, r.during.upper) for r in await self.session.execute(q)]

    async def set_reservation_state(self, lock_id: uuid.UUID, state: ReservationState, now: datetime) -> None:
        await self.session.execute(
            update(reservations)
            .where(reservations.c.lock_id == lock_id)
            .values(state=state.value, updated_at=now)
        )

    async def move_reservation(
        self, lock_id: uuid.UUID, unit: int, start: datetime, end: datetime, now: datetime
    ) -> bool:
        """Move a confirmed hold to another unit/range in ONE statement, so the old range is freed and
        the new one taken at once under the exclusion constraint; False (savepoint rolled back,
        nothing changed) when the target overlaps another active reservation."""
        try:
            async with self.session.begin_nested():
                await self.session.execute(
                    update(reservations)
                    .where(reservations.c.lock_id == lock_id)
                    .values(unit=unit, during=Range(start, end), updated_at=now)
                )
        except IntegrityError as exc:
            if is_violation(exc, ExclusionViolation):
                return False
            raise
        return True

    async def taken_units_except(
        self, service_id: uuid.UUID, start: datetime, end: datetime, lock_id: uuid.UUID
    ) -> set[int]:
        q = select(reservations.c.unit).where(
            reservations.c.service_id == service_id,
            reservations.c.state.in_(ACTIVE),
            reservations.c.lock_id != lock_id,
            reservations.c.during.overlaps(Range(start, end)),
        )
        return {r.unit for r in await self.session.execute(q)}
