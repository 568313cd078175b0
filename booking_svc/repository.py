"""booking schema: tables (mirroring migrations/) and the queries of one unit of work."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Any, cast

from psycopg.errors import ExclusionViolation, UniqueViolation
from psycopg.rows import dict_row
from sqlalchemy import (
    ARRAY,
    BigInteger,
    Boolean,
    Column,
    CursorResult,
    Date,
    DateTime,
    ForeignKey,
    Identity,
    Integer,
    LargeBinary,
    MetaData,
    Row,
    SmallInteger,
    String,
    Table,
    Text,
    Uuid,
    and_,
    delete,
    func,
    insert,
    select,
    text,
    true,
    update,
)
from sqlalchemy.dialects.postgresql import JSONB, TSTZRANGE, Range
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from booking_svc.domain import (
    ACTIVE_STATES,
    OPEN_REFUND_STATES,
    Actor,
    Booking,
    BookingState,
    CancellationPolicy,
    Clinic,
    ClinicBooking,
    Closure,
    DuplicateRequest,
    HoldAttempt,
    Interval,
    Pet,
    RefundState,
    Reservation,
    ReservationState,
    Service,
    UnitTaken,
    format_end,
    parse_hhmm,
)
from petpro.db import raw_execute

SCHEMA = "booking"
metadata = MetaData(schema=SCHEMA)

clinics = Table(
    "clinics",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("name", String(200), nullable=False),
    Column("time_zone", String(64), nullable=False),
    Column("address", String(300), nullable=False, server_default=""),
    Column("phone", String(40), nullable=False, server_default=""),
    Column("email", String(254), nullable=False, server_default=""),
    Column("opening_hours", JSONB, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("version", Integer, nullable=False, server_default="1"),
    Column("request_id", Uuid, unique=True),
    Column("reminder_offsets_minutes", ARRAY(Integer), nullable=False, server_default="{2880,120}"),
)
services = Table(
    "services",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("clinic_id", Uuid, ForeignKey("clinics.id"), nullable=False),
    Column("name", String(200), nullable=False),
    Column("description", Text, nullable=False, server_default=""),
    Column("duration_minutes", Integer, nullable=False),
    Column("price_minor", BigInteger, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("capacity", Integer, nullable=False, server_default="1"),
    Column("species_allowed", ARRAY(String(32)), nullable=False, server_default="{}"),
    Column("buffer_after_minutes", Integer, nullable=False, server_default="0"),
    Column("min_notice_minutes", Integer, nullable=False, server_default="0"),
    Column("max_horizon_days", Integer, nullable=False, server_default="180"),
    Column("active", Boolean, nullable=False, server_default=true()),
    Column("archived_at", DateTime(timezone=True)),
    Column("version", Integer, nullable=False, server_default="1"),
    Column("request_id", Uuid, unique=True),
    Column("full_refund_hours", Integer, nullable=False, server_default="24"),
    Column("late_refund_percent", Integer, nullable=False, server_default="50"),
    Column("reschedule_cutoff_hours", Integer, nullable=False, server_default="24"),
)
closures = Table(
    "closures",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("clinic_id", Uuid, ForeignKey("clinics.id"), nullable=False),
    Column("start_date", Date, nullable=False),
    Column("end_date", Date, nullable=False),
    Column("reason", String(200), nullable=False, server_default=""),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)
day_overrides = Table(
    "day_overrides",
    metadata,
    Column("clinic_id", Uuid, ForeignKey("clinics.id"), primary_key=True),
    Column("day", Date, primary_key=True),
    Column("intervals", JSONB, nullable=False),
)
catalog_state = Table(
    "catalog_state",
    metadata,
    Column("id", SmallInteger, primary_key=True),
    Column("version", BigInteger, nullable=False),
)
pets = Table(
    "pets",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("owner_user_id", Uuid, nullable=False),
    Column("name", String(100), nullable=False),
    Column("species", String(32), nullable=False),
    Column("breed", String(100), nullable=False, server_default=""),
    Column("birth_date", Date),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)
reservations = Table(
    "reservations",
    metadata,
    Column("lock_id", Uuid, primary_key=True),
    Column("owner_user_id", Uuid, nullable=False),
    Column("owner_email", String(254), nullable=False),
    Column("owner_name", String(100), nullable=False, server_default=""),
    Column("request_id", String(128), nullable=False),
    Column("request_hash", String(64), nullable=False),
    Column("service_id", Uuid, ForeignKey("services.id"), nullable=False),
    Column("clinic_id", Uuid, nullable=False),
    Column("pet_id", Uuid, ForeignKey("pets.id"), nullable=False),
    Column("unit", SmallInteger, nullable=False),
    Column("during", TSTZRANGE, nullable=False),
    Column("state", String(16), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    Column("amount_minor", BigInteger, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("payment_id", Uuid),
    Column("failure_reason", String(64)),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)
bookings = Table(
    "bookings",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("lock_id", Uuid, ForeignKey("reservations.lock_id"), nullable=False, unique=True),
    Column("payment_id", Uuid, nullable=False),
    Column("owner_user_id", Uuid, nullable=False),
    Column("clinic_id", Uuid, nullable=False),
    Column("service_id", Uuid, nullable=False),
    Column("pet_id", Uuid, nullable=False),
    Column("start_time", DateTime(timezone=True), nullable=False),
    Column("end_time", DateTime(timezone=True), nullable=False),
    Column("state", String(16), nullable=False),
    Column("amount_minor", BigInteger, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("cancelled_at", DateTime(timezone=True)),
    Column("policy_full_refund_hours", Integer, nullable=False, server_default="24"),
    Column("policy_late_refund_percent", Integer, nullable=False, server_default="50"),
    Column("policy_reschedule_cutoff_hours", Integer, nullable=False, server_default="24"),
    Column("refund_minor", BigInteger, nullable=False, server_default="0"),
    Column("refund_state", String(16), nullable=False, server_default="NONE"),
    Column("provider_refund_id", String(255), nullable=False, server_default=""),
    Column("refund_updated_at", DateTime(timezone=True)),
    Column("refund_attempts", Integer, nullable=False, server_default="0"),
    Column("refund_next_at", DateTime(timezone=True)),
    Column("refund_error", Text, nullable=False, server_default=""),
    Column("refund_round", Integer, nullable=False, server_default="0"),
    Column("cancel_reason", String(500), nullable=False, server_default=""),
    Column("cancelled_by", String(16)),
    Column("updated_at", DateTime(timezone=True)),
    Column("version", Integer, nullable=False, server_default="1"),
    Column("reschedule_count", Integer, nullable=False, server_default="0"),
)
booking_requests = Table(
    "booking_requests",
    metadata,
    Column("request_id", Uuid, primary_key=True),
    Column("booking_id", Uuid, ForeignKey("bookings.id"), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("fingerprint", String(64), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)
outbox = Table(
    "outbox",
    metadata,
    Column("id", BigInteger, Identity(), primary_key=True),
    Column("event_id", Uuid, nullable=False, unique=True),
    Column("topic", String(200), nullable=False),
    Column("key", String(200), nullable=False),
    Column("event_type", String(200), nullable=False),
    Column("payload", LargeBinary, nullable=False),
    Column("traceparent", String(64), nullable=False, server_default=""),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("sent_at", DateTime(timezone=True)),
    Column("attempts", Integer, nullable=False, server_default="0"),
)

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
# the catalog cache's version, read before every catalog lookup (ReserveSlot's TRY_HOLD reads it itself)
CATALOG_VERSION = "SELECT version FROM catalog_state WHERE id = 1"

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
ADD_BOOKING_WITH_EVENT = """
WITH b AS (
  INSERT INTO bookings (id, lock_id, payment_id, owner_user_id, clinic_id, service_id, pet_id, start_time, end_time,
    state, amount_minor, currency, created_at, updated_at, version, policy_full_refund_hours,
    policy_late_refund_percent, policy_reschedule_cutoff_hours)
  VALUES (%(id)s, %(lock_id)s, %(payment_id)s, %(owner)s, %(clinic_id)s, %(service_id)s, %(pet_id)s, %(start)s,
    %(end)s, %(state)s, %(amount_minor)s, %(currency)s, %(created_at)s, %(created_at)s, %(version)s,
    %(full_refund_hours)s, %(late_refund_percent)s, %(reschedule_cutoff_hours)s)),
o AS (
  INSERT INTO outbox (event_id, topic, key, event_type, payload, traceparent)
  VALUES (%(event_id)s, %(topic)s, %(key)s, %(event_type)s, %(payload)s, %(traceparent)s))
SELECT pg_notify('outbox', '')
"""


def _intervals(raw: list[list[str]]) -> list[Interval]:
    return [Interval(parse_hhmm(a), parse_hhmm(b)) for a, b in raw]


def _hours(raw: dict[str, list[list[str]]]) -> dict[str, list[Interval]]:
    return {day: _intervals(ivs) for day, ivs in raw.items()}


def intervals_json(ivs: list[Interval]) -> list[list[str]]:
    return [[iv.start.strftime("%H:%M"), format_end(iv.end)] for iv in ivs]


def hours_json(hours: dict[str, list[Interval]]) -> dict[str, list[list[str]]]:
    return {d: intervals_json(ivs) for d, ivs in hours.items() if ivs}


def _clinic(r: Row[Any]) -> Clinic:
    return Clinic(
        r.id,
        r.name,
        r.time_zone,
        _hours(r.opening_hours),
        r.address,
        r.phone,
        r.email,
        r.version,
        reminder_offsets_minutes=tuple(r.reminder_offsets_minutes),
    )


def _service(r: Row[Any]) -> Service:
    return Service(
        r.id,
        r.clinic_id,
        r.name,
        r.duration_minutes,
        r.price_minor,
        r.currency,
        r.capacity,
        r.description,
        tuple(r.species_allowed or ()),
        r.buffer_after_minutes,
        r.min_notice_minutes,
        r.max_horizon_days,
        r.active,
        r.archived_at is not None,
        r.version,
        policy=CancellationPolicy(r.full_refund_hours, r.late_refund_percent, r.reschedule_cutoff_hours),
    )


def _service_values(svc: Service) -> dict[str, object]:
    return {
        "clinic_id": svc.clinic_id,
        "name": svc.name,
        "description": svc.description,
        "duration_minutes": svc.duration_minutes,
        "price_minor": svc.price_minor,
        "currency": svc.currency,
        "capacity": svc.capacity,
        "species_allowed": list(svc.species_allowed),
        "buffer_after_minutes": svc.buffer_after_minutes,
        "min_notice_minutes": svc.min_notice_minutes,
        "max_horizon_days": svc.max_horizon_days,
        "active": svc.active,
        "full_refund_hours": svc.policy.full_refund_hours,
        "late_refund_percent": svc.policy.late_refund_percent,
        "reschedule_cutoff_hours": svc.policy.reschedule_cutoff_hours,
    }


def _pet(r: Row[Any]) -> Pet:
    return Pet(r.id, r.owner_user_id, r.name, r.species, r.breed or None, r.birth_date, r.created_at)


def _reservation(r: Row[Any], booking_id: uuid.UUID | None = None) -> Reservation:
    return Reservation(
        lock_id=r.lock_id,
        owner_user_id=r.owner_user_id,
        owner_email=r.owner_email,
        owner_name=r.owner_name,
        request_id=r.request_id,
        request_hash=r.request_hash,
        service_id=r.service_id,
        clinic_id=r.clinic_id,
        pet_id=r.pet_id,
        unit=r.unit,
        start=r.during.lower,
        end=r.during.upper,
        state=ReservationState(r.state),
        expires_at=r.expires_at,
        amount_minor=r.amount_minor,
        currency=r.currency,
        payment_id=r.payment_id,
        failure_reason=r.failure_reason,
        booking_id=booking_id,
        created_at=r.created_at,
    )


def _booking(r: Row[Any]) -> Booking:
    return Booking(
        r.id,
        r.lock_id,
        r.payment_id,
        r.owner_user_id,
        r.clinic_id,
        r.service_id,
        r.pet_id,
        r.start_time,
        r.end_time,
        BookingState(r.state),
        r.amount_minor,
        r.currency,
        r.created_at,
        r.cancelled_at,
        policy=CancellationPolicy(
            r.policy_full_refund_hours, r.policy_late_refund_percent, r.policy_reschedule_cutoff_hours
        ),
        refund_minor=r.refund_minor,
        refund_state=RefundState(r.refund_state),
        provider_refund_id=r.provider_refund_id,
        refund_updated_at=r.refund_updated_at,
        cancel_reason=r.cancel_reason,
        cancelled_by=Actor(r.cancelled_by) if r.cancelled_by else None,
        updated_at=r.updated_at or r.created_at,
        version=r.version,
        reschedule_count=r.reschedule_count,
        refund_attempts=r.refund_attempts,
        refund_round=r.refund_round,
        refund_error=r.refund_error,
    )


def _is(exc: IntegrityError, kind: type[Exception], constraint: str | None = None) -> bool:
    orig = exc.orig
    if not isinstance(orig, kind):
        return False
    return constraint is None or getattr(getattr(orig, "diag", None), "constraint_name", None) == constraint


class BookingRepository:
    """Queries of one unit of work (a session in a transaction) or of a read-only autocommit connection."""

    def __init__(self, session: AsyncSession | AsyncConnection) -> None:
        self.s = session

    # -- catalog ---------------------------------------------------------------------------------
    async def list_clinics(self, after: tuple[str, ...] | None, limit: int) -> list[Clinic]:
        q = select(clinics).order_by(clinics.c.name, clinics.c.id).limit(limit)
        if after:
            q = q.where(func.row(clinics.c.name, clinics.c.id) > func.row(after[0], uuid.UUID(after[1])))
        return [_clinic(r) for r in (await self.s.execute(q))]

    async def clinic(self, clinic_id: uuid.UUID, *, for_update: bool = False) -> Clinic | None:
        """The clinic with its calendar: closures and day overrides that have not passed yet (two days of
        slack so every time zone's "today" is covered)."""
        q = select(clinics).where(clinics.c.id == clinic_id)
        if for_update:
            q = q.with_for_update()
        r = (await self.s.execute(q)).first()
        if r is None:
            return None
        clinic = _clinic(r)
        since = func.current_date() - 2
        clinic.closures = [
            Closure(c.id, c.clinic_id, c.start_date, c.end_date, c.reason)
            for c in await self.s.execute(
                select(closures)
                .where(closures.c.clinic_id == clinic_id, closures.c.end_date >= since)
                .order_by(closures.c.start_date, closures.c.id)
            )
        ]
        clinic.overrides = {
            o.day: _intervals(o.intervals)
            for o in await self.s.execute(
                select(day_overrides).where(
                    day_overrides.c.clinic_id == clinic_id, day_overrides.c.day >= since
                )
            )
        }
        return clinic

    async def list_services(
        self, clinic_id: uuid.UUID, after: tuple[str, ...] | None, limit: int
    ) -> list[Service]:
        q = (
            select(services)
            .where(services.c.clinic_id == clinic_id, services.c.archived_at.is_(None))
            .order_by(services.c.name, services.c.id)
            .limit(limit)
        )
        if after:
            q = q.where(func.row(services.c.name, services.c.id) > func.row(after[0], uuid.UUID(after[1])))
        return [_service(r) for r in (await self.s.execute(q))]

    async def service_with_clinic(self, service_id: uuid.UUID) -> tuple[Service, Clinic] | None:
        svc = await self.service(service_id)
        if svc is None:
            return None
        clinic = await self.clinic(svc.clinic_id)
        assert clinic is not None  # foreign key
        return svc, clinic

    async def service(self, service_id: uuid.UUID, *, for_update: bool = False) -> Service | None:
        q = select(services).where(services.c.id == service_id)
        if for_update:
            q = q.with_for_update()
        r = (await self.s.execute(q)).first()
        return _service(r) if r else None

    # -- catalog changes (ClinicAdminService) -------------------------------------------------------
    async def catalog_version(self) -> int:
        # read before every catalog lookup (the cache's invalidation): psycopg directly, as the hot
        # statements, since SQLAlchemy's per-statement work was ~1 ms of booking's CPU per lookup
        cur = await raw_execute(self.s, CATALOG_VERSION, {}, operation="SELECT")
        row = await cur.fetchone()
        assert row is not None  # the migration inserts the one row
        return int(row[0])

    async def bump_catalog(self) -> None:
        """In the transaction of every catalog change: caches see the new version on their next read."""
        await self.s.execute(
            update(catalog_state).where(catalog_state.c.id == 1).values(version=catalog_state.c.version + 1)
        )

    async def add_clinic(self, clinic: Clinic, request_id: uuid.UUID | None = None) -> uuid.UUID:
        """Insert; with a ``request_id`` already used, nothing is inserted and the first clinic's id returned."""
        stmt = pg_insert(clinics).values(
            id=clinic.id,
            name=clinic.name,
            time_zone=clinic.time_zone,
            address=clinic.address,
            phone=clinic.phone,
            email=clinic.email,
            opening_hours=hours_json(clinic.opening_hours),
            version=clinic.version,
            request_id=request_id,
        )
        if request_id is None:
            await self.s.execute(stmt)
            return clinic.id
        await self.s.execute(stmt.on_conflict_do_nothing(index_elements=["request_id"]))
        return uuid.UUID(
            str(
                (
                    await self.s.execute(select(clinics.c.id).where(clinics.c.request_id == request_id))
                ).scalar_one()
            )
        )

    async def save_clinic(self, clinic: Clinic) -> None:
        """Write profile + weekly hours, version + 1 (the caller holds the row lock)."""
        await self.s.execute(
            update(clinics)
            .where(clinics.c.id == clinic.id)
            .values(
                name=clinic.name,
                time_zone=clinic.time_zone,
                address=clinic.address,
                phone=clinic.phone,
                email=clinic.email,
                opening_hours=hours_json(clinic.opening_hours),
                version=clinics.c.version + 1,
            )
        )
        clinic.version += 1

    async def add_service(self, svc: Service, request_id: uuid.UUID | None = None) -> uuid.UUID:
        """Insert; with a ``request_id`` already used, nothing is inserted and the first service's id returned."""
        stmt = pg_insert(services).values(
            id=svc.id, version=svc.version, request_id=request_id, **_service_values(svc)
        )
        if request_id is None:
            await self.s.execute(stmt)
            return svc.id
        await self.s.execute(stmt.on_conflict_do_nothing(index_elements=["request_id"]))
        return uuid.UUID(
            str(
                (
                    await self.s.execute(select(services.c.id).where(services.c.request_id == request_id))
                ).scalar_one()
            )
        )

    async def save_service(self, svc: Service, *, archive_at: datetime | None = None) -> None:
        values = {**_service_values(svc), "version": services.c.version + 1}
        if archive_at is not None:
            values["archived_at"] = archive_at
        await self.s.execute(update(services).where(services.c.id == svc.id).values(**values))
        svc.version += 1

    async def add_closure(self, c: Closure) -> None:
        await self.s.execute(
            insert(closures).values(
                id=c.id, clinic_id=c.clinic_id, start_date=c.start_date, end_date=c.end_date, reason=c.reason
            )
        )

    async def delete_closure(self, clinic_id: uuid.UUID, closure_id: uuid.UUID) -> bool:
        r = await self.s.execute(
            delete(closures).where(closures.c.clinic_id == clinic_id, closures.c.id == closure_id)
        )
        return bool(cast(CursorResult[Any], r).rowcount)

    async def list_closures(
        self, clinic_id: uuid.UUID, after: tuple[str, ...] | None, limit: int
    ) -> list[Closure]:
        q = (
            select(closures)
            .where(closures.c.clinic_id == clinic_id, closures.c.end_date >= func.current_date() - 2)
            .order_by(closures.c.start_date, closures.c.id)
            .limit(limit)
        )
        if after:
            q = q.where(
                func.row(closures.c.start_date, closures.c.id)
                > func.row(date.fromisoformat(after[0]), uuid.UUID(after[1]))
            )
        return [
            Closure(c.id, c.clinic_id, c.start_date, c.end_date, c.reason) for c in await self.s.execute(q)
        ]

    async def put_override(self, clinic_id: uuid.UUID, day: date, ivs: list[Interval]) -> None:
        stmt = pg_insert(day_overrides).values(clinic_id=clinic_id, day=day, intervals=intervals_json(ivs))
        await self.s.execute(
            stmt.on_conflict_do_update(
                index_elements=["clinic_id", "day"], set_={"intervals": stmt.excluded.intervals}
            )
        )

    async def delete_override(self, clinic_id: uuid.UUID, day: date) -> bool:
        r = await self.s.execute(
            delete(day_overrides).where(day_overrides.c.clinic_id == clinic_id, day_overrides.c.day == day)
        )
        return bool(cast(CursorResult[Any], r).rowcount)

    async def upcoming_bookings(
        self, clinic_id: uuid.UUID, now: datetime, start: datetime | None = None, end: datetime | None = None
    ) -> list[Booking]:
        """Confirmed bookings of the clinic starting after ``now`` (within [start, end) if given)."""
        q = (
            select(bookings)
            .where(
                bookings.c.clinic_id == clinic_id,
                bookings.c.state == "CONFIRMED",
                bookings.c.start_time > now,
            )
            .order_by(bookings.c.start_time, bookings.c.id)
        )
        if start is not None:
            q = q.where(bookings.c.start_time >= start)
        if end is not None:
            q = q.where(bookings.c.start_time < end)
        return [_booking(r) for r in await self.s.execute(q)]

    async def list_clinic_bookings(
        self,
        clinic_id: uuid.UUID,
        start: datetime,
        end: datetime,
        states: list[str],
        after: tuple[str, ...] | None,
        limit: int,
    ) -> list[ClinicBooking]:
        q = (
            select(
                bookings,
                services.c.name.label("service_name"),
                pets.c.name.label("pet_name"),
                pets.c.species.label("pet_species"),
                reservations.c.owner_name,
                reservations.c.owner_email,
            )
            .join(reservations, reservations.c.lock_id == bookings.c.lock_id)
            .join(services, services.c.id == bookings.c.service_id)
            .join(pets, pets.c.id == bookings.c.pet_id)
            .where(
                bookings.c.clinic_id == clinic_id, bookings.c.start_time >= start, bookings.c.start_time < end
            )
            .order_by(bookings.c.start_time, bookings.c.id)
            .limit(limit)
        )
        if states:
            q = q.where(bookings.c.state.in_(states))
        if after:
            q = q.where(
                func.row(bookings.c.start_time, bookings.c.id)
                > func.row(datetime.fromisoformat(after[0]), uuid.UUID(after[1]))
            )
        return [
            ClinicBooking(_booking(r), r.service_name, r.pet_name, r.pet_species, r.owner_name, r.owner_email)
            for r in await self.s.execute(q)
        ]

    async def upsert_clinic(self, clinic: Clinic) -> None:
        values = {
            "id": clinic.id,
            "name": clinic.name,
            "time_zone": clinic.time_zone,
            "address": clinic.address,
            "phone": clinic.phone,
            "email": clinic.email,
            "opening_hours": hours_json(clinic.opening_hours),
            "reminder_offsets_minutes": list(clinic.reminder_offsets_minutes),
        }
        stmt = pg_insert(clinics).values(**values)
        await self.s.execute(
            stmt.on_conflict_do_update(
                index_elements=["id"], set_={k: stmt.excluded[k] for k in values if k != "id"}
            )
        )

    async def upsert_service(self, svc: Service) -> None:
        values = {"id": svc.id, **_service_values(svc)}
        stmt = pg_insert(services).values(**values)
        await self.s.execute(
            stmt.on_conflict_do_update(
                index_elements=["id"], set_={k: stmt.excluded[k] for k in values if k != "id"}
            )
        )

    # -- pets ------------------------------------------------------------------------------------
    async def add_pet(self, pet: Pet) -> None:
        await self.s.execute(
            insert(pets).values(
                id=pet.id,
                owner_user_id=pet.owner_user_id,
                name=pet.name,
                species=pet.species,
                breed=pet.breed or "",
                birth_date=pet.birth_date,
                created_at=pet.created_at,
            )
        )

    async def pet(self, pet_id: uuid.UUID) -> Pet | None:
        r = (await self.s.execute(select(pets).where(pets.c.id == pet_id))).first()
        return _pet(r) if r else None

    async def list_pets(self, owner: uuid.UUID, after: tuple[str, ...] | None, limit: int) -> list[Pet]:
        q = (
            select(pets)
            .where(pets.c.owner_user_id == owner)
            .order_by(pets.c.created_at, pets.c.id)
            .limit(limit)
        )
        if after:
            q = q.where(
                func.row(pets.c.created_at, pets.c.id)
                > func.row(datetime.fromisoformat(after[0]), uuid.UUID(after[1]))
            )
        return [_pet(r) for r in (await self.s.execute(q))]

    # -- reservations ----------------------------------------------------------------------------
    async def reservation(self, lock_id: uuid.UUID, *, for_update: bool = False) -> Reservation | None:
        q = (
            select(reservations, bookings.c.id.label("booking_id"))
            .outerjoin(bookings, bookings.c.lock_id == reservations.c.lock_id)
            .where(reservations.c.lock_id == lock_id)
        )
        if for_update:
            q = q.with_for_update(of=reservations)
        r = (await self.s.execute(q)).first()
        return _reservation(r, r.booking_id) if r else None

    async def reservation_by_request(self, owner: uuid.UUID, request_id: str) -> Reservation | None:
        q = select(reservations).where(
            reservations.c.owner_user_id == owner, reservations.c.request_id == request_id
        )
        r = (await self.s.execute(q)).first()
        return await self.reservation(r.lock_id) if r else None

    async def expire_overlapping(
        self, service_id: uuid.UUID, start: datetime, end: datetime, now: datetime
    ) -> int:
        """Move expired holds on this range out of the active set, so they never block."""
        result = await self.s.execute(
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
        return {r.unit for r in await self.s.execute(q)}

    async def insert_reservation(self, res: Reservation) -> None:
        """Insert a hold.  Raises UnitTaken (exclusion constraint: the unit is held or booked for an
        overlapping range) or DuplicateRequest (same owner + request id): the transaction is then
        aborted, so this must be its last statement."""
        try:
            await self.s.execute(
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
            if _is(exc, ExclusionViolation):
                raise UnitTaken from None
            if _is(exc, UniqueViolation, "reservations_idempotency"):
                raise DuplicateRequest from None
            raise

    async def try_hold(self, res: Reservation, capacity: int, catalog_version: int) -> HoldAttempt:
        cur = await raw_execute(
            self.s,
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
            async with self.s.begin_nested():
                await self.s.execute(
                    update(reservations).where(reservations.c.lock_id == lock_id).values(**values)
                )
        except IntegrityError as exc:
            if _is(exc, ExclusionViolation):
                return False
            raise
        return True

    async def confirm_held(
        self, lock_id: uuid.UUID, payment_id: uuid.UUID, now: datetime
    ) -> tuple[Reservation, Pet, int] | None:
        cur = await raw_execute(
            self.s,
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

    async def add_booking_with_event(
        self,
        b: Booking,
        event_id: uuid.UUID,
        topic: str,
        key: str,
        event_type: str,
        payload: bytes,
        traceparent: str,
    ) -> None:
        await raw_execute(
            self.s,
            ADD_BOOKING_WITH_EVENT,
            operation="INSERT",
            params={
                "id": b.id,
                "lock_id": b.lock_id,
                "payment_id": b.payment_id,
                "owner": b.owner_user_id,
                "clinic_id": b.clinic_id,
                "service_id": b.service_id,
                "pet_id": b.pet_id,
                "start": b.start,
                "end": b.end,
                "state": b.state.value,
                "amount_minor": b.amount_minor,
                "currency": b.currency,
                "created_at": b.created_at,
                "version": b.version,
                "full_refund_hours": b.policy.full_refund_hours,
                "late_refund_percent": b.policy.late_refund_percent,
                "reschedule_cutoff_hours": b.policy.reschedule_cutoff_hours,
                "event_id": event_id,
                "topic": topic,
                "key": key,
                "event_type": event_type,
                "payload": payload,
                "traceparent": traceparent,
            },
        )

    async def expire_due(self, now: datetime, limit: int = 500) -> list[uuid.UUID]:
        q = text(
            "UPDATE reservations SET state = 'EXPIRED', updated_at = :now WHERE lock_id IN ("
            " SELECT lock_id FROM reservations WHERE state = 'HELD' AND expires_at <= :now"
            " ORDER BY expires_at LIMIT :limit FOR UPDATE SKIP LOCKED) RETURNING lock_id"
        )
        return [r.lock_id for r in await self.s.execute(q, {"now": now, "limit": limit})]

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
        return [(r.during.lower, r.during.upper) for r in await self.s.execute(q)]

    # -- bookings --------------------------------------------------------------------------------
    async def add_booking(self, b: Booking) -> None:
        await self.s.execute(
            insert(bookings).values(
                id=b.id,
                lock_id=b.lock_id,
                payment_id=b.payment_id,
                owner_user_id=b.owner_user_id,
                clinic_id=b.clinic_id,
                service_id=b.service_id,
                pet_id=b.pet_id,
                start_time=b.start,
                end_time=b.end,
                state=b.state.value,
                amount_minor=b.amount_minor,
                currency=b.currency,
                created_at=b.created_at,
                updated_at=b.created_at,
                version=b.version,
                policy_full_refund_hours=b.policy.full_refund_hours,
                policy_late_refund_percent=b.policy.late_refund_percent,
                policy_reschedule_cutoff_hours=b.policy.reschedule_cutoff_hours,
            )
        )

    async def booking(self, booking_id: uuid.UUID, *, for_update: bool = False) -> Booking | None:
        q = select(bookings).where(bookings.c.id == booking_id)
        if for_update:
            q = q.with_for_update()
        r = (await self.s.execute(q)).first()
        return _booking(r) if r else None

    async def save_booking_change(self, b: Booking, *, next_refund_at: datetime | None = None) -> None:
        """Write a lifecycle change of a locked booking (state, slot, cancellation, refund owed)."""
        values: dict[str, object] = dict(
            state=str(b.state),
            start_time=b.start,
            end_time=b.end,
            cancelled_at=b.cancelled_at,
            refund_minor=b.refund_minor,
            refund_state=b.refund_state.value,
            refund_updated_at=b.refund_updated_at,
            cancel_reason=b.cancel_reason,
            cancelled_by=b.cancelled_by.value if b.cancelled_by else None,
            updated_at=b.updated_at,
            version=b.version,
            reschedule_count=b.reschedule_count,
        )
        if next_refund_at is not None:
            values["refund_next_at"] = next_refund_at
        await self.s.execute(update(bookings).where(bookings.c.id == b.id).values(**values))

    async def lifecycle_request(self, request_id: uuid.UUID) -> tuple[uuid.UUID, str, str] | None:
        r = (
            await self.s.execute(select(booking_requests).where(booking_requests.c.request_id == request_id))
        ).first()
        return (r.booking_id, r.kind, r.fingerprint) if r else None

    async def add_lifecycle_request(
        self, request_id: uuid.UUID, booking_id: uuid.UUID, kind: str, fingerprint: str, now: datetime
    ) -> None:
        try:
            await self.s.execute(
                insert(booking_requests).values(
                    request_id=request_id,
                    booking_id=booking_id,
                    kind=kind,
                    fingerprint=fingerprint,
                    created_at=now,
                )
            )
        except IntegrityError as exc:
            if _is(exc, UniqueViolation):
                raise DuplicateRequest from None
            raise

    async def set_reservation_state(self, lock_id: uuid.UUID, state: ReservationState, now: datetime) -> None:
        await self.s.execute(
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
            async with self.s.begin_nested():
                await self.s.execute(
                    update(reservations)
                    .where(reservations.c.lock_id == lock_id)
                    .values(unit=unit, during=Range(start, end), updated_at=now)
                )
        except IntegrityError as exc:
            if _is(exc, ExclusionViolation):
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
        return {r.unit for r in await self.s.execute(q)}

    async def claim_due_refunds(self, now: datetime, lease_until: datetime, limit: int = 50) -> list[Booking]:
        """Open refunds due for an attempt (or a status check), claimed with SKIP LOCKED and leased
        until ``lease_until`` so two replicas never work on the same one at once."""
        q = text(
            "UPDATE bookings SET refund_next_at = :lease, refund_attempts = refund_attempts + 1 WHERE id IN ("
            " SELECT id FROM bookings WHERE refund_state IN ('PENDING', 'PROCESSING', 'FAILED')"
            " AND (refund_next_at IS NULL OR refund_next_at <= :now)"
            " ORDER BY refund_next_at NULLS FIRST LIMIT :limit FOR UPDATE SKIP LOCKED) RETURNING id"
        )
        ids = [r.id for r in await self.s.execute(q, {"now": now, "lease": lease_until, "limit": limit})]
        if not ids:
            return []
        return [_booking(r) for r in await self.s.execute(select(bookings).where(bookings.c.id.in_(ids)))]

    async def record_refund(
        self,
        booking_id: uuid.UUID,
        state: RefundState,
        provider_refund_id: str,
        error: str,
        now: datetime,
        next_at: datetime | None,
        *,
        refund_round: int | None = None,
        was_round: int | None = None,
    ) -> None:
        """The outcome of one attempt; ``refund_round``: the round it was made in (kept if None), only
        if the booking was still in ``was_round`` (a late answer about an older round changes nothing)."""
        q = update(bookings).where(bookings.c.id == booking_id)
        if was_round is not None:
            q = q.where(bookings.c.refund_round == was_round)
        values: dict[str, Any] = {
            "refund_state": state.value,
            "provider_refund_id": provider_refund_id,
            "refund_error": error[:2000],
            "refund_updated_at": now,
            "refund_next_at": next_at,
        }
        if refund_round is not None:
            values["refund_round"] = refund_round
        await self.s.execute(q.values(**values))

    async def open_refunds(self, limit: int) -> list[Booking]:
        q = (
            select(bookings)
            .where(bookings.c.refund_state.in_([s.value for s in OPEN_REFUND_STATES]))
            .order_by(bookings.c.cancelled_at, bookings.c.id)
            .limit(limit)
        )
        return [_booking(r) for r in await self.s.execute(q)]

    async def booking_by_lock(self, lock_id: uuid.UUID) -> Booking | None:
        r = (await self.s.execute(select(bookings).where(bookings.c.lock_id == lock_id))).first()
        return _booking(r) if r else None

    async def list_bookings(
        self,
        *,
        owner: uuid.UUID | None,
        clinic: uuid.UUID | None,
        start_from: datetime | None,
        after: tuple[str, ...] | None,
        limit: int,
    ) -> list[Booking]:
        q = select(bookings).order_by(bookings.c.start_time, bookings.c.id).limit(limit)
        if owner:
            q = q.where(bookings.c.owner_user_id == owner)
        if clinic:
            q = q.where(bookings.c.clinic_id == clinic)
        if start_from:
            q = q.where(bookings.c.start_time >= start_from)
        if after:
            q = q.where(
                func.row(bookings.c.start_time, bookings.c.id)
                > func.row(datetime.fromisoformat(after[0]), uuid.UUID(after[1]))
            )
        return [_booking(r) for r in await self.s.execute(q)]

    async def add_outbox(
        self, event_id: uuid.UUID, topic: str, key: str, event_type: str, payload: bytes, traceparent: str
    ) -> None:
        await self.s.execute(
            insert(outbox).values(
                event_id=event_id,
                topic=topic,
                key=key,
                event_type=event_type,
                payload=payload,
                traceparent=traceparent,
            )
        )
        await self.s.execute(text("NOTIFY outbox"))  # delivered at commit: wakes the relay
