"""Booking domain: clinics' opening hours, the slot grid, reservations and their state rules.

Pure Python: no gRPC, no SQL.  Times are timezone-aware; a clinic's hours are in its own zone.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from petpro.errors import (
    Conflict,
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    NotFound,
    PermissionDenied,
)

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")  # index = date.weekday()
MAX_BOOKING_HORIZON = timedelta(days=180)


class ReservationState(StrEnum):
    HELD = "HELD"
    CONFIRMED = "CONFIRMED"
    EXPIRED = "EXPIRED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"


ACTIVE_STATES = (ReservationState.HELD, ReservationState.CONFIRMED)


class BookingState(StrEnum):
    """A booking's lifecycle (``petpro.booking.v1.BookingState`` without the prefix)."""

    CONFIRMED = "CONFIRMED"
    CANCELLED = "CANCELLED"
    COMPLETED = "COMPLETED"
    NO_SHOW = "NO_SHOW"


# why a reservation paid after its hold expired could not be confirmed (someone else has the slot)
FAILURE_SLOT_TAKEN = "SLOT_TAKEN"


class SlotUnavailable(Conflict):
    reason = "SLOT_UNAVAILABLE"


class IdempotencyKeyReused(Conflict):
    reason = "IDEMPOTENCY_KEY_REUSED"


class ServiceNotFound(NotFound):
    reason = "SERVICE_NOT_FOUND"


class ClinicNotFound(NotFound):
    reason = "CLINIC_NOT_FOUND"


class PetNotFound(NotFound):
    reason = "PET_NOT_FOUND"


class PetNotOwned(PermissionDenied):
    reason = "PET_NOT_OWNED"


class ReservationNotFound(NotFound):
    reason = "RESERVATION_NOT_FOUND"


class BookingNotFound(NotFound):
    reason = "BOOKING_NOT_FOUND"


class ReservationClosed(FailedPrecondition):
    """The reservation can no longer be confirmed (failed or cancelled, or paid by another payment)."""

    reason = "RESERVATION_CLOSED"


class SlotLost(FailedPrecondition):
    """Payment arrived after the hold expired and someone else has the slot now: refund."""

    reason = "SLOT_NO_LONGER_AVAILABLE"


class UnitTaken(Exception):
    """The chosen unit of the slot was taken concurrently (the exclusion constraint decided)."""


class DuplicateRequest(Exception):
    """A reservation with this owner and request id exists (an idempotent retry raced us)."""


def bad_slot(description: str, reason: str) -> InvalidArgument:
    return InvalidArgument.field("slot_start_time", description, reason)


@dataclass(frozen=True)
class Interval:
    start: time
    end: time  # time(0, 0) as an end means midnight at the end of the day ("24:00")

    @property
    def end_minutes(self) -> int:
        return 24 * 60 if self.end == time(0, 0) else self.end.hour * 60 + self.end.minute

    @property
    def start_minutes(self) -> int:
        return self.start.hour * 60 + self.start.minute


def parse_hhmm(value: str) -> time:
    """ "HH:MM" (24 h; "24:00" is midnight at the end of the day, stored as 00:00)."""
    return time(0, 0) if value == "24:00" else time.fromisoformat(value)


def format_end(t: time) -> str:
    return "24:00" if t == time(0, 0) else t.strftime("%H:%M")


def check_intervals(intervals: list[tuple[str, Interval]]) -> list[FieldViolation]:
    """Violations of one day's intervals (field path, interval): end not after start, overlaps."""
    out: list[FieldViolation] = []
    valid: list[tuple[str, Interval]] = []
    for path, iv in intervals:
        if iv.end_minutes <= iv.start_minutes:
            out.append(
                FieldViolation(f"{path}.close_time", "must be after open_time", "INTERVAL_END_BEFORE_START")
            )
        else:
            valid.append((path, iv))
    valid.sort(key=lambda p: p[1].start_minutes)
    reach = -1  # the latest end so far
    for path, iv in valid:
        if iv.start_minutes < reach:
            out.append(FieldViolation(path, "overlaps another interval of the same day", "INTERVALS_OVERLAP"))
        reach = max(reach, iv.end_minutes)
    return out


def check_time_zone(name: str, field_path: str = "clinic.time_zone") -> ZoneInfo:
    try:
        if not name or name.startswith(("/", ".")):
            raise ValueError(name)
        return ZoneInfo(name)
    except (ValueError, ZoneInfoNotFoundError):
        raise InvalidArgument.field(
            field_path, "is not a known IANA time zone", "TIME_ZONE_UNKNOWN"
        ) from None


@dataclass(frozen=True)
class Closure:
    id: uuid.UUID
    clinic_id: uuid.UUID
    start_date: date
    end_date: date
    reason: str = ""

    def covers(self, day: date) -> bool:
        return self.start_date <= day <= self.end_date


@dataclass
class Clinic:
    id: uuid.UUID
    name: str
    time_zone: str
    opening_hours: dict[str, list[Interval]]  # "mon" → intervals, local time
    address: str = ""
    phone: str = ""
    email: str = ""
    version: int = 1
    closures: list[Closure] = field(default_factory=list)  # the ones that have not ended
    overrides: dict[date, list[Interval]] = field(
        default_factory=dict
    )  # a day's hours instead of its weekday's
    # when the owner is reminded, in minutes before the start (default 48 h and 2 h)
    reminder_offsets_minutes: tuple[int, ...] = (2880, 120)

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.time_zone)

    @property
    def etag(self) -> str:
        return f"c{self.version}"

    def intervals_on(self, day: date) -> list[Interval]:
        """Opening intervals of a local day: closed on a closure, else the day's override, else its weekday's."""
        if any(c.covers(day) for c in self.closures):
            return []
        if day in self.overrides:
            return self.overrides[day]
        return self.opening_hours.get(WEEKDAYS[day.weekday()], [])


class SpeciesNotAllowed(FailedPrecondition):
    reason = "SPECIES_NOT_ALLOWED"


class ServiceNotBookable(FailedPrecondition):
    reason = "SERVICE_NOT_BOOKABLE"


class EtagMismatch(Conflict):
    """AIP-154: the resource changed since the caller read it."""

    reason = "ETAG_MISMATCH"


def check_etag(current: str, given: str) -> None:
    if given and given != current:
        raise EtagMismatch(
            "the resource was changed by someone else; read it again and retry", metadata={"etag": current}
        )


@dataclass
class Service:
    id: uuid.UUID
    clinic_id: uuid.UUID
    name: str
    duration_minutes: int
    price_minor: int
    currency: str
    capacity: int = 1
    description: str = ""
    species_allowed: tuple[str, ...] = ()  # empty: every species
    buffer_after_minutes: int = 0
    min_notice_minutes: int = 0
    max_horizon_days: int = MAX_BOOKING_HORIZON.days
    active: bool = True
    archived: bool = False
    version: int = 1
    policy: CancellationPolicy = field(default_factory=lambda: CancellationPolicy())

    @property
    def duration(self) -> timedelta:
        return timedelta(minutes=self.duration_minutes)

    @property
    def step(self) -> timedelta:
        return timedelta(minutes=self.duration_minutes + self.buffer_after_minutes)

    @property
    def etag(self) -> str:
        return f"s{self.version}"

    @property
    def bookable(self) -> bool:
        return self.active and not self.archived

    def check_species(self, species: str) -> None:
        if self.species_allowed and species not in self.species_allowed:
            allowed = ", ".join(s.lower() for s in self.species_allowed)
            raise SpeciesNotAllowed(
                f"this service is for {allowed} only, not {species.lower()}",
                metadata={"species": species, "allowed": allowed},
            )

    def check_rules(self) -> None:
        """Whole-resource rules after a create or an update (the proto checks each field's range)."""
        violations = []
        if not self.name.strip():
            violations.append(FieldViolation("service.name", "is required", "REQUIRED"))
        if self.duration_minutes < 5:
            violations.append(
                FieldViolation("service.duration_minutes", "must be at least 5", "DURATION_TOO_SHORT")
            )
        if self.capacity < 1:
            violations.append(FieldViolation("service.capacity", "must be at least 1", "CAPACITY_TOO_SMALL"))
        if self.price_minor <= 0:
            violations.append(
                FieldViolation("service.price.amount_minor", "must be positive", "PRICE_NOT_POSITIVE")
            )
        if len(self.currency) != 3 or not self.currency.isalpha() or not self.currency.isupper():
            violations.append(
                FieldViolation("service.price.currency", "must be an ISO 4217 code", "CURRENCY_INVALID")
            )
        if violations:
            raise InvalidArgument(
                "; ".join(f"{v.field}: {v.description}" for v in violations), violations=violations
            )


@dataclass(frozen=True)
class GridSlot:
    start: datetime  # UTC
    end: datetime


def _local_instant(day: date, minutes: int, zone: ZoneInfo) -> datetime:
    """The UTC instant of a wall-clock time on a local day.  A time that does not exist (skipped by a
    DST change) resolves to the same distance past the gap's start (02:30 → 03:30 in Berlin in March); a
    time that happens twice to its first occurrence."""
    base = datetime.combine(day, time(0, 0))
    local = (base + timedelta(minutes=minutes)).replace(tzinfo=zone, fold=0)
    return local.astimezone(UTC)


def slot_grid(clinic: Clinic, service: Service, day: date) -> list[GridSlot]:
    """The bookable slots of ``service`` on local date ``day``: from each opening, stepping by
    duration + buffer, each fully inside its opening interval.  Computed in real (UTC) time, so a
    day with a DST change has neither a slot that does not exist nor one twice."""
    zone = clinic.zone
    out: list[GridSlot] = []
    for iv in clinic.intervals_on(day):
        start = _local_instant(day, iv.start_minutes, zone)
        close = _local_instant(day, iv.end_minutes, zone)
        while start + service.duration <= close:
            out.append(GridSlot(start, start + service.duration))
            start += service.step
    return out


def bookable_window(service: Service, now: datetime) -> tuple[datetime, datetime]:
    """Slots may start in [now + minimum notice, now + horizon]."""
    return now + timedelta(minutes=service.min_notice_minutes), now + timedelta(days=service.max_horizon_days)


def check_slot(clinic: Clinic, service: Service, start: datetime, now: datetime) -> GridSlot:
    """The grid slot starting at ``start``, or an INVALID_ARGUMENT naming why it isn't bookable.

    Arithmetic on the opening interval that contains ``start`` (the same real-time grid as
    ``slot_grid``): no day's grid is built on the reserve path."""
    if start.tzinfo is None:
        raise bad_slot("must carry a time zone", "SLOT_NAIVE")
    if start <= now:
        raise bad_slot("must be in the future", "SLOT_IN_PAST")
    earliest, latest = bookable_window(service, now)
    if start > latest:
        raise bad_slot(f"must be within {service.max_horizon_days} days", "SLOT_TOO_FAR")
    if start < earliest:
        raise bad_slot(f"must be at least {service.min_notice_minutes} minutes ahead", "SLOT_TOO_SOON")
    zone = clinic.zone
    day = start.astimezone(zone).date()
    at = start.astimezone(UTC)
    duration, step = service.duration, service.step
    for iv in clinic.intervals_on(day):
        opening = _local_instant(day, iv.start_minutes, zone)
        close = _local_instant(day, iv.end_minutes, zone)
        if step <= timedelta(0) or at < opening or close - opening < duration:
            continue
        # slot k runs [opening + k·step, opening + k·step + duration) while it ends by ``close``: one
        # division finds the only slot that can hold ``start``
        k = (at - opening) // step
        slot = GridSlot(opening + k * step, opening + k * step + duration)
        if slot.end > close or at >= slot.end:
            continue  # past the last slot, or in the buffer after one
        if slot.start != at:
            raise _off_grid(service)
        return slot
    raise bad_slot("is outside the clinic's opening hours", "SLOT_OUTSIDE_HOURS")


def _off_grid(service: Service) -> InvalidArgument:
    return bad_slot(f"is not on the service's {service.duration_minutes}-minute grid", "SLOT_OFF_GRID")


def outside_schedule(clinic: Clinic, start: datetime, end: datetime) -> bool:
    """Whether [start, end) no longer lies inside one opening interval of its local day (after a
    change of hours, a closure or an override)."""
    zone = clinic.zone
    day = start.astimezone(zone).date()
    for iv in clinic.intervals_on(day):
        if _local_instant(day, iv.start_minutes, zone) <= start and end <= _local_instant(
            day, iv.end_minutes, zone
        ):
            return False
    return True


@dataclass
class Pet:
    id: uuid.UUID
    owner_user_id: uuid.UUID
    name: str
    species: str
    breed: str | None = None
    birth_date: date | None = None
    created_at: datetime = field(default_factory=lambda: datetime.now(UTC))


def check_pet_owner(pet: Pet | None, owner: uuid.UUID) -> Pet:
    if pet is None:
        raise PetNotFound("pet not found")
    if pet.owner_user_id != owner:
        raise PetNotOwned("this pet belongs to another user")
    return pet


@dataclass
class Reservation:
    lock_id: uuid.UUID
    owner_user_id: uuid.UUID
    owner_email: str
    owner_name: str
    request_id: str
    request_hash: str
    service_id: uuid.UUID
    clinic_id: uuid.UUID
    pet_id: uuid.UUID
    unit: int
    start: datetime
    end: datetime
    state: ReservationState
    expires_at: datetime
    amount_minor: int
    currency: str
    payment_id: uuid.UUID | None = None
    failure_reason: str | None = None
    booking_id: uuid.UUID | None = None
    created_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    def effective_state(self, now: datetime) -> ReservationState:
        """A HELD row past its expiry is EXPIRED, whether or not the sweeper has run yet."""
        if self.state == ReservationState.HELD and self.expires_at <= now:
            return ReservationState.EXPIRED
        return self.state


@dataclass(frozen=True)
class HoldAttempt:
    """What one reserve statement found and did: whether this request id was used before, who owns
    the pet (None: no such pet), the lowest unit free of live reservations (None: all taken), and
    whether the hold was inserted on it (False when a concurrent reserver, an expired-but-unswept
    hold or an idempotent retry won the constraint)."""

    earlier: bool
    pet_owner: uuid.UUID | None
    unit: int | None
    inserted: bool
    catalog_version: (
        int  # the catalog's version the statement saw: another than the caller's, nothing inserted
    )


def request_fingerprint(*parts: object) -> str:
    """Hash of what an idempotent request asked for: same key + different body is rejected."""
    return hashlib.sha256("|".join(str(p) for p in parts).encode()).hexdigest()


class Actor(StrEnum):
    OWNER = "OWNER"
    CLINIC = "CLINIC"


class RefundState(StrEnum):
    NONE = "NONE"  # nothing to refund
    PENDING = "PENDING"  # owed: to be sent to the provider (again, after an error)
    PROCESSING = "PROCESSING"  # the provider accepted it, its webhook will settle it
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"  # the provider failed it after accepting: an operator looks at it


OPEN_REFUND_STATES = (RefundState.PENDING, RefundState.PROCESSING, RefundState.FAILED)


@dataclass(frozen=True)
class CancellationPolicy:
    """Full refund up to ``full_refund_hours`` before the start, ``late_refund_percent`` of the price
    inside that window, nothing (and no owner cancellation) once started; rescheduling until
    ``reschedule_cutoff_hours`` before the start."""

    full_refund_hours: int = 24
    late_refund_percent: int = 50
    reschedule_cutoff_hours: int = 24

    def __post_init__(self) -> None:
        if not 0 <= self.late_refund_percent <= 100:
            raise ValueError("late_refund_percent must be within 0..100")
        if self.full_refund_hours < 0 or self.reschedule_cutoff_hours < 0:
            raise ValueError("policy hours must not be negative")

    def refund_minor(self, amount_minor: int, start: datetime, now: datetime) -> int:
        """What an owner gets back when cancelling at ``now`` (rounded down to the minor unit)."""
        if now >= start:
            return 0
        if start - now >= timedelta(hours=self.full_refund_hours):
            return amount_minor
        return amount_minor * self.late_refund_percent // 100

    def reschedule_deadline(self, start: datetime) -> datetime:
        return start - timedelta(hours=self.reschedule_cutoff_hours)


DEFAULT_POLICY = CancellationPolicy()


class BookingNotConfirmed(FailedPrecondition):
    reason = "BOOKING_NOT_CONFIRMED"


class BookingStarted(FailedPrecondition):
    reason = "BOOKING_STARTED"


class BookingNotStarted(FailedPrecondition):
    reason = "BOOKING_NOT_STARTED"


class RescheduleCutoffPassed(FailedPrecondition):
    reason = "RESCHEDULE_CUTOFF_PASSED"


class SameSlot(FailedPrecondition):
    reason = "SLOT_SAME"


@dataclass
class Booking:
    id: uuid.UUID
    lock_id: uuid.UUID
    payment_id: uuid.UUID
    owner_user_id: uuid.UUID
    clinic_id: uuid.UUID
    service_id: uuid.UUID
    pet_id: uuid.UUID
    start: datetime
    end: datetime
    state: BookingState
    amount_minor: int
    currency: str
    created_at: datetime
    cancelled_at: datetime | None = None
    policy: CancellationPolicy = DEFAULT_POLICY
    refund_minor: int = 0
    refund_state: RefundState = RefundState.NONE
    provider_refund_id: str = ""
    refund_updated_at: datetime | None = None
    cancel_reason: str = ""
    cancelled_by: Actor | None = None
    updated_at: datetime | None = None
    version: int = 1
    reschedule_count: int = 0
    refund_attempts: int = 0
    refund_round: int = 0  # new refunds made after the provider failed an accepted one
    refund_error: str = ""

    # -- the state machine (CONFIRMED → CANCELLED | COMPLETED | NO_SHOW; reschedule keeps CONFIRMED) --
    def _confirmed(self) -> None:
        if self.state != BookingState.CONFIRMED:
            raise BookingNotConfirmed(f"booking is {self.state.lower()}", metadata={"field": "booking_id"})

    def cancel(self, actor: Actor, reason: str, now: datetime) -> int:
        """Cancel; returns the refund owed.  The owner only before the start, per the booking's own
        policy; the clinic at any time, in full, with a reason."""
        self._confirmed()
        if actor == Actor.OWNER:
            if now >= self.start:
                raise BookingStarted(
                    "the appointment has started; it can no longer be cancelled",
                    metadata={"field": "booking_id"},
                )
            refund = self.policy.refund_minor(self.amount_minor, self.start, now)
        else:
            if not reason.strip():
                raise InvalidArgument.field(
                    "reason", "is required when the clinic cancels", "REASON_REQUIRED"
                )
            refund = self.amount_minor
        self.state = BookingState.CANCELLED
        self.cancelled_at = self.updated_at = self.refund_updated_at = now
        self.cancelled_by = actor
        self.cancel_reason = reason.strip()
        self.refund_minor = refund
        self.refund_state = RefundState.PENDING if refund > 0 else RefundState.NONE
        self.version += 1
        return refund

    def check_reschedule(self, new_start: datetime, now: datetime) -> None:
        self._confirmed()
        if now >= self.start:
            raise BookingStarted(
                "the appointment has started; it can no longer be moved", metadata={"field": "booking_id"}
            )
        if now >= self.policy.reschedule_deadline(self.start):
            raise RescheduleCutoffPassed(
                f"rescheduling closed {self.policy.reschedule_cutoff_hours} h before the start",
                metadata={"field": "slot_start_time"},
            )
        if new_start == self.start:
            raise SameSlot("the booking is already at this slot", metadata={"field": "slot_start_time"})

    def reschedule(self, start: datetime, end: datetime, now: datetime) -> None:
        self.start, self.end = start, end
        self.updated_at = now
        self.reschedule_count += 1
        self.version += 1

    def record_outcome(self, outcome: BookingState, now: datetime) -> None:
        if outcome not in (BookingState.COMPLETED, BookingState.NO_SHOW):
            raise ValueError(outcome)
        self._confirmed()
        if now < self.start:
            raise BookingNotStarted(
                "an outcome can only be recorded after the start", metadata={"field": "booking_id"}
            )
        self.state = outcome
        self.updated_at = now
        self.version += 1

    # -- what the owner may still do (the mobile app shows it; never computed by the client) -------
    def can_cancel(self, now: datetime) -> bool:
        return self.state == BookingState.CONFIRMED and now < self.start

    def refund_if_cancelled_now(self, now: datetime) -> int:
        return self.policy.refund_minor(self.amount_minor, self.start, now) if self.can_cancel(now) else 0

    def reschedule_deadline(self, now: datetime) -> datetime | None:
        deadline = self.policy.reschedule_deadline(self.start)
        return deadline if self.state == BookingState.CONFIRMED and now < deadline else None

    @classmethod
    def confirm(
        cls,
        res: Reservation,
        payment_id: uuid.UUID,
        now: datetime,
        policy: CancellationPolicy = DEFAULT_POLICY,
    ) -> Booking:
        """The booking a paid reservation becomes: its slot, owner and price, CONFIRMED, with its own
        copy of the service's cancellation policy (a later change of the service's never alters it)."""
        return cls(
            id=uuid.uuid4(),
            lock_id=res.lock_id,
            payment_id=payment_id,
            owner_user_id=res.owner_user_id,
            clinic_id=res.clinic_id,
            service_id=res.service_id,
            pet_id=res.pet_id,
            start=res.start,
            end=res.end,
            state=BookingState.CONFIRMED,
            amount_minor=res.amount_minor,
            currency=res.currency,
            created_at=now,
            policy=policy,
            updated_at=now,
        )


@dataclass(frozen=True)
class ClinicBooking:
    """A booking as the clinic's schedule shows it: with service, pet and owner contact."""

    booking: Booking
    service_name: str
    pet_name: str
    pet_species: str
    owner_name: str
    owner_email: str


class ConfirmDecision(StrEnum):
    ALREADY_CONFIRMED = "already_confirmed"  # same payment: return the existing booking
    CONFIRM_HELD = "confirm_held"  # the hold is live: confirm it
    RECLAIM = "reclaim"  # paid after expiry: confirm only if the slot is still free


def decide_confirm(res: Reservation, payment_id: uuid.UUID, now: datetime) -> ConfirmDecision:
    state = res.effective_state(now)
    if state == ReservationState.CANCELLED and res.booking_id is not None and res.payment_id == payment_id:
        # a replayed payment webhook after the booking was cancelled: the same booking, never a refund
        return ConfirmDecision.ALREADY_CONFIRMED
    if state == ReservationState.CONFIRMED:
        if res.payment_id == payment_id:
            return ConfirmDecision.ALREADY_CONFIRMED
        raise ReservationClosed("reservation is already confirmed with another payment")
    if state == ReservationState.HELD:
        return ConfirmDecision.CONFIRM_HELD
    if state == ReservationState.EXPIRED:
        return ConfirmDecision.RECLAIM
    if state == ReservationState.FAILED and res.failure_reason == FAILURE_SLOT_TAKEN:
        raise SlotLost("the slot was taken after the hold expired")
    raise ReservationClosed(f"reservation is {state.value.lower()}")


@dataclass(frozen=True)
class Reclaim:
    """What a late payment does to its reservation once we know whether the slot is still free."""

    state: ReservationState
    failure_reason: str | None = None

    @property
    def lost(self) -> bool:
        return self.state != ReservationState.CONFIRMED


def decide_reclaim(slot_still_free: bool) -> Reclaim:
    """Paid after the hold expired: confirm if nobody took the slot meanwhile; otherwise the
    reservation fails (``SLOT_TAKEN``) and the payment is to be refunded (``SlotLost``)."""
    if slot_still_free:
        return Reclaim(ReservationState.CONFIRMED)
    return Reclaim(ReservationState.FAILED, FAILURE_SLOT_TAKEN)
