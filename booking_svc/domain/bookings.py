"""Confirmed bookings and their lifecycle: CONFIRMED → CANCELLED | COMPLETED | NO_SHOW (reschedule keeps
CONFIRMED), the refund a cancellation owes, and what the owner may still do."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from booking_svc.domain.errors import (
    BookingNotConfirmed,
    BookingNotStarted,
    BookingStarted,
    RescheduleCutoffPassed,
    SameSlot,
)
from booking_svc.domain.policy import DEFAULT_POLICY, CancellationPolicy
from booking_svc.domain.reservations import Reservation
from petpro.errors import InvalidArgument


class BookingState(StrEnum):
    """A booking's lifecycle (``petpro.booking.v1.BookingState`` without the prefix)."""

    CONFIRMED = "CONFIRMED"
    CANCELLED = "CANCELLED"
    COMPLETED = "COMPLETED"
    NO_SHOW = "NO_SHOW"


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


@dataclass
class Booking:
    id: uuid.UUID
    lock_id: uuid.UUID
    payment_id: uuid.UUID | None  # None: booked by staff to be paid at the clinic
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
    provider_id: uuid.UUID | None = None  # the assigned provider, copied from the reservation
    assignment: str | None = None
    resource_ids: tuple[uuid.UUID, ...] = ()
    pay_at_clinic: bool = False  # confirmed by staff without an online payment: nothing to refund

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
        if self.pay_at_clinic:  # nothing was paid online
            refund = 0
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

    def check_move(self, start: datetime, now: datetime) -> None:
        """Staff may move a confirmed booking that has not started, to a future time (no cut-off)."""
        self._confirmed()
        if now >= self.start:
            raise BookingStarted(
                "the appointment has started; it can no longer be moved", metadata={"field": "booking_id"}
            )

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
        if self.pay_at_clinic or not self.can_cancel(now):
            return 0
        return self.policy.refund_minor(self.amount_minor, self.start, now)

    def reschedule_deadline(self, now: datetime) -> datetime | None:
        deadline = self.policy.reschedule_deadline(self.start)
        return deadline if self.state == BookingState.CONFIRMED and now < deadline else None

    @classmethod
    def confirm(
        cls,
        res: Reservation,
        payment_id: uuid.UUID | None,
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
            provider_id=res.provider_id,
            assignment=res.assignment,
            resource_ids=res.resource_ids,
            pay_at_clinic=payment_id is None,
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
