"""Booking domain: clinics' opening hours, the slot grid, reservations and their state rules.

Pure Python: no gRPC, no SQL.  Times are timezone-aware; a clinic's hours are in its own zone.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum
from zoneinfo import ZoneInfo

from petpro.errors import Conflict, FailedPrecondition, InvalidArgument, NotFound, PermissionDenied

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
    end: time


@dataclass
class Clinic:
    id: uuid.UUID
    name: str
    time_zone: str
    opening_hours: dict[str, list[Interval]]  # "mon" → intervals, local time
    address: str = ""
    phone: str = ""
    email: str = ""

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.time_zone)

    def intervals_on(self, day: date) -> list[Interval]:
        return self.opening_hours.get(WEEKDAYS[day.weekday()], [])


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

    @property
    def duration(self) -> timedelta:
        return timedelta(minutes=self.duration_minutes)


@dataclass(frozen=True)
class GridSlot:
    start: datetime  # UTC
    end: datetime


def slot_grid(clinic: Clinic, service: Service, day: date) -> list[GridSlot]:
    """The bookable slots of ``service`` on local date ``day``: from each opening, back to back, each
    fully inside the opening interval."""
    zone = clinic.zone
    out = []
    for iv in clinic.intervals_on(day):
        start = datetime.combine(day, iv.start, zone)
        close = datetime.combine(day, iv.end, zone)
        while start + service.duration <= close:
            out.append(GridSlot(start.astimezone(UTC), (start + service.duration).astimezone(UTC)))
            start += service.duration
    return out


def check_slot(clinic: Clinic, service: Service, start: datetime, now: datetime) -> GridSlot:
    """The grid slot starting at ``start``, or an INVALID_ARGUMENT naming why it isn't bookable.

    Arithmetic on the one opening interval that contains ``start`` (the same wall-clock grid as
    ``slot_grid``): no day's grid is built on the reserve path."""
    if start.tzinfo is None:
        raise bad_slot("must carry a time zone", "SLOT_NAIVE")
    if start <= now:
        raise bad_slot("must be in the future", "SLOT_IN_PAST")
    if start - now > MAX_BOOKING_HORIZON:
        raise bad_slot(f"must be within {MAX_BOOKING_HORIZON.days} days", "SLOT_TOO_FAR")
    zone = clinic.zone
    local = start.astimezone(zone)
    day = local.date()
    at = start.astimezone(UTC)
    step = service.duration
    for iv in clinic.intervals_on(day):
        opening = datetime.combine(day, iv.start, zone)
        close = datetime.combine(day, iv.end, zone)
        if opening.utcoffset() != close.utcoffset():
            return _check_on_grid(clinic, service, at)  # a daylight-saving shift today: walk the grid
        count = (close - opening) // step if step else 0
        if count <= 0 or not opening <= at < opening + count * step:
            continue
        # slot k runs [opening + k·step, opening + (k+1)·step): one division finds the one holding ``start``
        k = (at - opening) // step
        slot = GridSlot((opening + k * step).astimezone(UTC), (opening + (k + 1) * step).astimezone(UTC))
        if slot.start != at:
            raise _off_grid(service)
        return slot
    raise bad_slot("is outside the clinic's opening hours", "SLOT_OUTSIDE_HOURS")


def _off_grid(service: Service) -> InvalidArgument:
    return bad_slot(f"is not on the service's {service.duration_minutes}-minute grid", "SLOT_OFF_GRID")


def _check_on_grid(clinic: Clinic, service: Service, at: datetime) -> GridSlot:
    """The whole day's grid, for the two days a year whose opening hours span a clock change."""
    slots = slot_grid(clinic, service, at.astimezone(clinic.zone).date())
    if not any(s.start <= at < s.end for s in slots):
        raise bad_slot("is outside the clinic's opening hours", "SLOT_OUTSIDE_HOURS")
    for s in slots:
        if s.start == at:
            return s
    raise _off_grid(service)


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


def request_fingerprint(*parts: object) -> str:
    """Hash of what an idempotent request asked for: same key + different body is rejected."""
    return hashlib.sha256("|".join(str(p) for p in parts).encode()).hexdigest()


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

    @classmethod
    def confirm(cls, res: Reservation, payment_id: uuid.UUID, now: datetime) -> Booking:
        """The booking a paid reservation becomes: its slot, owner and price, CONFIRMED."""
        return cls(
            id=uuid.uuid4(), lock_id=res.lock_id, payment_id=payment_id, owner_user_id=res.owner_user_id,
            clinic_id=res.clinic_id, service_id=res.service_id, pet_id=res.pet_id, start=res.start, end=res.end,
            state=BookingState.CONFIRMED, amount_minor=res.amount_minor, currency=res.currency, created_at=now,
        )


class ConfirmDecision(StrEnum):
    ALREADY_CONFIRMED = "already_confirmed"  # same payment: return the existing booking
    CONFIRM_HELD = "confirm_held"  # the hold is live: confirm it
    RECLAIM = "reclaim"  # paid after expiry: confirm only if the slot is still free


def decide_confirm(res: Reservation, payment_id: uuid.UUID, now: datetime) -> ConfirmDecision:
    state = res.effective_state(now)
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
