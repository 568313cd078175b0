"""Reservation queries: ReserveSlot's one statement, the lock ConfirmBooking takes, expiry, moves, and the
live ranges availability counts.

One rule decides which unit a reservation may take, here and nowhere else in SQL: the lowest unit free
of *live* reservations (confirmed, or held and not expired: ``LIVE``, ``free_unit``).  The exclusion
constraint (no_double_booking) cannot read the clock and counts a *lapsed* HELD row until it is
EXPIRED (``expire_lapsed``; the sweeper expires them every few seconds): a lapsed hold in the way of
the unit taken is expired first, so it never blocks.  A concurrent transaction that takes the unit
meanwhile makes the statements insert or move nothing.  The hot statements run on the psycopg connection itself: the profile put half of
ReserveSlot's CPU in SQLAlchemy's per-statement work."""

from __future__ import annotations

import uuid
from datetime import datetime

from psycopg.errors import DeadlockDetected, ExclusionViolation
from psycopg.rows import dict_row, namedtuple_row
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from booking_svc.adapters.repository.rows import Queries, hold_params, is_violation, reservation_from_row
from booking_svc.adapters.tables import reservations
from booking_svc.domain import HoldAttempt, Pet, Reservation, ReservationState
from petpro.db import raw_execute

# a reservation that blocks its unit at %(now)s, and a hold that lapsed by then (Reservation.effective_state)
LIVE = "(r.state = 'CONFIRMED' OR (r.state = 'HELD' AND r.expires_at > %(now)s))"
LAPSED = "r.state = 'HELD' AND r.expires_at <= %(now)s"


def expire_lapsed(service: str) -> str:
    """The service's lapsed holds overlapping [start, end), expired."""
    return f"""UPDATE reservations r SET state = 'EXPIRED', updated_at = %(now)s
  WHERE r.service_id = {service} AND r.during && tstzrange(%(start)s, %(end)s) AND {LAPSED}"""


def free_unit(service: str) -> str:
    """The lowest unit of the service free of live reservations (other than %(lock_id)s) over [start, end)."""
    return f"""SELECT u FROM generate_series(1, %(capacity)s::int) AS u
  WHERE NOT EXISTS (
    SELECT 1 FROM reservations r
    WHERE r.service_id = {service} AND r.unit = u AND r.during && tstzrange(%(start)s, %(end)s)
      AND r.lock_id <> %(lock_id)s AND {LIVE})
  ORDER BY u LIMIT 1"""


SERVICE = "%(service_id)s"
SERVICE_OF_LOCK = "(SELECT service_id FROM reservations WHERE lock_id = %(lock_id)s)"

# ReserveSlot's statement, on an autocommit connection: insert the hold on the lowest unit free of
# live reservations, only while the catalog is still at the caller's version, the request id is new and
# the pet is the owner's.  The insert decides races through the constraints: ``ON CONFLICT DO NOTHING``
# with no target covers the exclusion constraint and the idempotency key alike, so a loser learns it
# lost from the same round trip instead of an aborted transaction.  (A lapsed hold not yet expired in
# the way is ``hold``'s to expire: an UPDATE in this statement, or even a probe for one, cost PostgreSQL
# ~0.1 ms of CPU on every call, for a case the sweeper makes rare.)
HOLD = f"""
WITH cat AS (SELECT version FROM catalog_state WHERE id = 1),
pet AS (SELECT owner_user_id FROM pets WHERE id = %(pet_id)s AND archived_at IS NULL),
earlier AS (SELECT 1 FROM reservations WHERE owner_user_id = %(owner)s AND request_id = %(request_id)s),
free_unit AS ({free_unit(SERVICE)}),
ins AS (
  INSERT INTO reservations (lock_id, owner_user_id, owner_email, owner_name, owner_locale, request_id, request_hash,
    service_id, clinic_id, pet_id, unit, during, state, expires_at, amount_minor, currency, created_at, updated_at)
  SELECT %(lock_id)s, %(owner)s, %(owner_email)s, %(owner_name)s, %(owner_locale)s, %(request_id)s, %(request_hash)s,
    %(service_id)s, %(clinic_id)s, %(pet_id)s, u, tstzrange(%(start)s, %(end)s), 'HELD', %(expires_at)s,
    %(amount_minor)s, %(currency)s, %(now)s, %(now)s
  FROM free_unit
  WHERE NOT EXISTS (SELECT 1 FROM earlier) AND (SELECT owner_user_id FROM pet) = %(owner)s
    AND (SELECT version FROM cat) = %(catalog_version)s
  ON CONFLICT DO NOTHING
  RETURNING unit),
-- its claims (docs/design/scheduling.md): the unit, and the pet over the slot plus the buffer; a pet
-- busy elsewhere fails the whole statement (claims_pet_free), nothing is inserted
claimed AS (
  INSERT INTO claims (lock_id, kind, subject_id, unit, clinic_id, during, active)
  SELECT %(lock_id)s, 'unit', %(service_id)s, ins.unit, %(clinic_id)s, tstzrange(%(start)s, %(end)s), true FROM ins
  UNION ALL
  SELECT %(lock_id)s, 'pet', %(pet_id)s, 0, %(clinic_id)s, tstzrange(%(start)s, %(claim_end)s), true FROM ins)
SELECT EXISTS (SELECT 1 FROM earlier), (SELECT owner_user_id FROM pet), (SELECT u FROM free_unit),
  EXISTS (SELECT 1 FROM ins), (SELECT version FROM cat)
"""

# a reservation moved in one statement (the old range freed and the new one taken at once under the
# exclusion constraint), onto the lowest free unit once the lapsed holds there are expired
MOVE = f"""
WITH free_unit AS ({free_unit(SERVICE_OF_LOCK)}),
lapsed AS ({expire_lapsed(SERVICE_OF_LOCK)} AND r.unit = (SELECT u FROM free_unit) RETURNING 1),
moved AS (
  UPDATE reservations SET unit = (SELECT u FROM free_unit), during = tstzrange(%(start)s, %(end)s),
    updated_at = %(now)s
  WHERE lock_id = %(lock_id)s AND EXISTS (SELECT 1 FROM free_unit) AND (SELECT count(*) FROM lapsed) >= 0
  RETURNING unit)
SELECT unit FROM moved
"""

EXPIRE_PET_LAPSED = f"""
WITH lapsed AS (
  UPDATE reservations r SET state = 'EXPIRED', updated_at = %(now)s
  WHERE r.lock_id IN (
    SELECT c.lock_id FROM claims c
    WHERE c.active AND c.kind = 'pet' AND c.subject_id = %(pet_id)s AND c.during && tstzrange(%(start)s, %(end)s))
    AND {LAPSED}
  RETURNING 1)
SELECT count(*) FROM lapsed
"""

EXPIRE_OVERLAPPING = f"WITH lapsed AS ({expire_lapsed(SERVICE)} RETURNING 1) SELECT count(*) FROM lapsed"

EXPIRE_DUE = f"""
UPDATE reservations SET state = 'EXPIRED', updated_at = %(now)s WHERE lock_id IN (
  SELECT r.lock_id FROM reservations r WHERE {LAPSED}
  ORDER BY r.expires_at LIMIT %(limit)s FOR UPDATE SKIP LOCKED)
RETURNING lock_id
"""

ACTIVE_RANGES = f"""
SELECT lower(r.during), upper(r.during) FROM reservations r
WHERE r.service_id = %(service_id)s AND r.during && tstzrange(%(start)s, %(end)s) AND {LIVE}
"""

# ConfirmBooking's first statement: the reservation locked, with what the booking and its event need
LOCK_FOR_CONFIRM = """
SELECT r.lock_id, r.owner_user_id, r.owner_email, r.owner_name, r.owner_locale, r.request_id, r.request_hash, r.service_id,
  r.clinic_id, r.pet_id, r.unit, lower(r.during) AS start_time, upper(r.during) AS end_time, r.state, r.expires_at,
  r.amount_minor, r.currency, r.payment_id, r.failure_reason, r.created_at, b.id AS booking_id,
  p.owner_user_id AS pet_owner, p.name AS pet_name, p.species AS pet_species, p.breed AS pet_breed,
  p.birth_date AS pet_birth_date, p.created_at AS pet_created_at, c.version AS catalog_version,
  r.provider_id, r.assignment, r.resource_ids
FROM reservations r
JOIN pets p ON p.id = r.pet_id
JOIN catalog_state c ON c.id = 1
LEFT JOIN bookings b ON b.lock_id = r.lock_id
WHERE r.lock_id = %(lock_id)s
FOR UPDATE OF r
"""


# GetReservation's read (twice per long-poll: before the wait and after the wake-up), on psycopg
# directly: through SQLAlchemy's select() it was about half of GetReservation's CPU in booking_svc
RESERVATION = f"""
SELECT {", ".join(f"r.{c.name}" for c in reservations.c)}, b.id AS booking_id
FROM reservations r LEFT JOIN bookings b ON b.lock_id = r.lock_id
WHERE r.lock_id = %(lock_id)s
"""


class ReservationQueries(Queries):
    async def reservation(self, lock_id: uuid.UUID) -> Reservation | None:
        cur = await raw_execute(
            self.session, RESERVATION, {"lock_id": lock_id}, operation="SELECT", row_factory=namedtuple_row
        )
        r = await cur.fetchone()
        return reservation_from_row(r, r.booking_id) if r else None

    async def reservation_by_request(self, owner: uuid.UUID, request_id: str) -> Reservation | None:
        q = select(reservations).where(
            reservations.c.owner_user_id == owner, reservations.c.request_id == request_id
        )
        r = (await self.session.execute(q)).first()
        return await self.reservation(r.lock_id) if r else None

    async def hold(self, res: Reservation, capacity: int, catalog_version: int) -> HoldAttempt:
        attempt = await self._hold(res, capacity, catalog_version)
        refused = attempt.unit is not None and not attempt.inserted and not attempt.earlier
        if (
            refused
            and attempt.pet_owner == res.owner_user_id
            and attempt.catalog_version == catalog_version
            # the constraint refused a unit no live reservation holds: a lapsed hold the sweeper has
            # not expired yet (or a concurrent winner, then nothing expires and the caller asks again)
            and await self.expire_overlapping(res.service_id, res.start, res.end, res.created_at)
        ):
            attempt = await self._hold(res, capacity, catalog_version)
        return attempt

    async def _hold(self, res: Reservation, capacity: int, catalog_version: int) -> HoldAttempt:
        try:
            return await self._hold_statement(res, capacity, catalog_version)
        except DeadlockDetected:  # two holds' claims checking each other at once: a race, ask again
            return HoldAttempt(False, res.owner_user_id, 1, False, catalog_version)
        except ExclusionViolation as exc:
            if getattr(exc.diag, "constraint_name", None) != "claims_pet_free":
                # a unit claim taken concurrently: as when no_double_booking refuses, ask again
                return HoldAttempt(False, res.owner_user_id, 1, False, catalog_version)
        # the pet is claimed over the range: by a lapsed hold (expired, then once more), or busy
        if await self.expire_pet_lapsed(res.pet_id, res.start, res.claim_end or res.end, res.created_at):
            try:
                return await self._hold_statement(res, capacity, catalog_version)
            except ExclusionViolation:
                pass
        return HoldAttempt(False, res.owner_user_id, None, False, catalog_version, conflict="pet")

    async def expire_pet_lapsed(
        self, pet_id: uuid.UUID, start: datetime, end: datetime, now: datetime
    ) -> int:
        """Expire the pet's lapsed holds whose claims overlap [start, end)."""
        cur = await raw_execute(
            self.session,
            EXPIRE_PET_LAPSED,
            {"pet_id": pet_id, "start": start, "end": end, "now": now},
            operation="UPDATE",
        )
        row = await cur.fetchone()
        assert row is not None
        return int(row[0])

    async def _hold_statement(self, res: Reservation, capacity: int, catalog_version: int) -> HoldAttempt:
        cur = await raw_execute(
            self.session,
            HOLD,
            operation="INSERT",
            params={
                **hold_params(res),
                "catalog_version": catalog_version,
                "capacity": capacity,
            },
        )
        row = await cur.fetchone()
        assert row is not None  # the outer SELECT always yields one row
        earlier, pet_owner, unit, inserted, version = row
        return HoldAttempt(earlier, pet_owner, unit, inserted, int(version))

    async def lock_for_confirm(self, lock_id: uuid.UUID) -> tuple[Reservation, Pet, int] | None:
        cur = await raw_execute(
            self.session, LOCK_FOR_CONFIRM, {"lock_id": lock_id}, operation="SELECT", row_factory=dict_row
        )
        r = await cur.fetchone()
        if r is None:
            return None
        res = Reservation(
            lock_id=r["lock_id"],
            owner_user_id=r["owner_user_id"],
            owner_email=r["owner_email"],
            owner_name=r["owner_name"],
            owner_locale=r["owner_locale"],
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
            booking_id=r["booking_id"],
            created_at=r["created_at"],
            provider_id=r["provider_id"],
            assignment=r["assignment"],
            resource_ids=tuple(r["resource_ids"] or ()),
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

    async def expire_overlapping(
        self, service_id: uuid.UUID, start: datetime, end: datetime, now: datetime
    ) -> int:
        cur = await raw_execute(
            self.session,
            EXPIRE_OVERLAPPING,
            {"service_id": service_id, "start": start, "end": end, "now": now},
            operation="UPDATE",
        )
        row = await cur.fetchone()
        assert row is not None
        return int(row[0])

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

    async def set_reservation_state(self, lock_id: uuid.UUID, state: ReservationState, now: datetime) -> None:
        await self.session.execute(
            update(reservations)
            .where(reservations.c.lock_id == lock_id)
            .values(state=state.value, updated_at=now)
        )

    async def move_reservation(
        self, lock_id: uuid.UUID, capacity: int, start: datetime, end: datetime, now: datetime
    ) -> int | None:
        params = {"lock_id": lock_id, "capacity": capacity, "start": start, "end": end, "now": now}
        try:
            async with self.session.begin_nested():  # a lost race rolls back to here, not the whole unit
                cur = await raw_execute(self.session, MOVE, params, operation="UPDATE")
                row = await cur.fetchone()
        except ExclusionViolation:
            return None
        return None if row is None else int(row[0])

    async def expire_due(self, now: datetime, limit: int = 500) -> list[uuid.UUID]:
        cur = await raw_execute(self.session, EXPIRE_DUE, {"now": now, "limit": limit}, operation="UPDATE")
        return [row[0] for row in await cur.fetchall()]

    async def active_counts(
        self, service_id: uuid.UUID, start: datetime, end: datetime, now: datetime
    ) -> list[tuple[datetime, datetime]]:
        cur = await raw_execute(
            self.session,
            ACTIVE_RANGES,
            {"service_id": service_id, "start": start, "end": end, "now": now},
            operation="SELECT",
        )
        return [(lo, hi) for lo, hi in await cur.fetchall()]
