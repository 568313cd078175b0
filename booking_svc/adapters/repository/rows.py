"""Rows ⟷ domain objects for the booking queries, and the base every query class shares."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import Row
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from booking_svc.domain import (
    Actor,
    Booking,
    BookingState,
    CancellationPolicy,
    Clinic,
    Interval,
    Pet,
    RefundState,
    Reservation,
    ReservationState,
    Service,
    format_end,
    parse_hhmm,
)


class Queries:
    """The session of one unit of work (a transaction) or a read-only autocommit connection."""

    def __init__(self, session: AsyncSession | AsyncConnection) -> None:
        self.session = session


def intervals_from_json(raw: list[list[str]]) -> list[Interval]:
    return [Interval(parse_hhmm(a), parse_hhmm(b)) for a, b in raw]


def hours_from_json(raw: dict[str, list[list[str]]]) -> dict[str, list[Interval]]:
    return {day: intervals_from_json(ivs) for day, ivs in raw.items()}


def intervals_json(ivs: list[Interval]) -> list[list[str]]:
    return [[iv.start.strftime("%H:%M"), format_end(iv.end)] for iv in ivs]


def hours_json(hours: dict[str, list[Interval]]) -> dict[str, list[list[str]]]:
    return {d: intervals_json(ivs) for d, ivs in hours.items() if ivs}


def clinic_from_row(r: Row[Any]) -> Clinic:
    return Clinic(
        r.id,
        r.name,
        r.time_zone,
        hours_from_json(r.opening_hours),
        r.address,
        r.phone,
        r.email,
        r.version,
        reminder_offsets_minutes=tuple(r.reminder_offsets_minutes),
        locale=r.locale,
    )


def service_from_row(r: Row[Any]) -> Service:
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


def service_values(svc: Service) -> dict[str, object]:
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


def pet_from_row(r: Row[Any]) -> Pet:
    return Pet(
        r.id,
        r.owner_user_id,
        r.name,
        r.species,
        r.breed or None,
        r.birth_date,
        r.created_at,
        weight_grams=r.weight_grams,
        notes=r.notes,
        archived_at=r.archived_at,
        version=r.version,
    )


def reservation_from_row(r: Row[Any], booking_id: uuid.UUID | None = None) -> Reservation:
    return Reservation(
        lock_id=r.lock_id,
        owner_user_id=r.owner_user_id,
        owner_email=r.owner_email,
        owner_name=r.owner_name,
        owner_locale=r.owner_locale,
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
        provider_id=r.provider_id,
        assignment=r.assignment,
        resource_ids=tuple(r.resource_ids or ()),
    )


def hold_params(res: Reservation) -> dict[str, Any]:
    """A new hold's reservation as the hold statements' parameters (capacity, planned, scheduled)."""
    return {
        "lock_id": res.lock_id,
        "owner": res.owner_user_id,
        "owner_email": res.owner_email,
        "owner_name": res.owner_name,
        "owner_locale": res.owner_locale,
        "request_id": res.request_id,
        "request_hash": res.request_hash,
        "service_id": res.service_id,
        "clinic_id": res.clinic_id,
        "pet_id": res.pet_id,
        "start": res.start,
        "end": res.end,
        "claim_end": res.claim_end or res.end,
        "expires_at": res.expires_at,
        "amount_minor": res.amount_minor,
        "currency": res.currency,
        "now": res.created_at,
    }


def booking_from_row(r: Row[Any]) -> Booking:
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
        provider_id=r.provider_id,
        assignment=r.assignment,
        resource_ids=tuple(r.resource_ids or ()),
        pay_at_clinic=bool(getattr(r, "pay_at_clinic", False)),
    )


def is_violation(exc: IntegrityError, kind: type[Exception], constraint: str | None = None) -> bool:
    orig = exc.orig
    if not isinstance(orig, kind):
        return False
    return constraint is None or getattr(getattr(orig, "diag", None), "constraint_name", None) == constraint
