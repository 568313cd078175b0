"""Reservations: a slot unit held for payment until its expiry, its states, and what a payment does
to it (confirm a live hold; after expiry, confirm only if the slot is still free)."""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum

from booking_svc.domain.errors import ReservationClosed, SlotLost


class ReservationState(StrEnum):
    HELD = "HELD"
    CONFIRMED = "CONFIRMED"
    EXPIRED = "EXPIRED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"


ACTIVE_STATES = (ReservationState.HELD, ReservationState.CONFIRMED)


# why a reservation paid after its hold expired could not be confirmed (someone else has the slot)
FAILURE_SLOT_TAKEN = "SLOT_TAKEN"


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
    owner_locale: str = ""  # BCP 47, for the booking's notifications ("" when unknown)
    # scheduling (docs/design/scheduling.md): the assigned provider, how, the resource items claimed,
    # and the end of its claims (the appointment's end plus the service's buffer; None: ``end``)
    provider_id: uuid.UUID | None = None
    assignment: str | None = None
    resource_ids: tuple[uuid.UUID, ...] = ()
    claim_end: datetime | None = None

    def effective_state(self, now: datetime) -> ReservationState:
        """A HELD row past its expiry is EXPIRED, whether or not the sweeper has run yet."""
        if self.state == ReservationState.HELD and self.expires_at <= now:
            return ReservationState.EXPIRED
        return self.state


@dataclass(frozen=True)
class HoldAttempt:
    """What one ReserveSlot statement (``BookingRepository.hold``) found and did: whether this request id
    was used before, who owns the pet (None: no such pet), the lowest unit free of live reservations
    (None: all taken), whether the hold was inserted on it (False also when a concurrent transaction
    won that unit or this request id), and the catalog's version it saw (another than the caller's:
    nothing inserted)."""

    earlier: bool
    pet_owner: uuid.UUID | None
    unit: int | None
    inserted: bool
    catalog_version: int
    conflict: str | None = None  # "pet": the pet's claim was refused (an overlapping appointment)


def request_fingerprint(*parts: object) -> str:
    """Hash of what an idempotent request asked for: same key + different body is rejected."""
    return hashlib.sha256("|".join(str(p) for p in parts).encode()).hexdigest()


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
