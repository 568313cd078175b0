"""pb ⟷ domain conversions both servicers need (the catalog, pets, reservations and bookings)."""

from __future__ import annotations

from datetime import datetime

from booking_svc.domain import WEEKDAYS, Booking, CancellationPolicy, Clinic, Pet, Reservation, Service
from petpro.convert import ts
from petpro_api.booking.v1 import booking_pb2
from petpro_api.common.v1 import money_pb2


def money(amount_minor: int, currency: str) -> money_pb2.Money:
    return money_pb2.Money(amount_minor=amount_minor, currency=currency)


def clinic_pb(c: Clinic) -> booking_pb2.Clinic:
    hours = [
        booking_pb2.OpeningHours(
            weekday=booking_pb2.Weekday.ValueType(WEEKDAYS.index(day) + 1),
            open_time=iv.start.strftime("%H:%M"),
            close_time=iv.end.strftime("%H:%M"),
        )
        for day in WEEKDAYS
        for iv in c.opening_hours.get(day, [])
    ]
    return booking_pb2.Clinic(
        clinic_id=str(c.id),
        name=c.name,
        time_zone=c.time_zone,
        address=c.address,
        phone=c.phone,
        email=c.email,
        opening_hours=hours,
        etag=c.etag,
        reminder_offsets_minutes=list(c.reminder_offsets_minutes),
    )


def policy_pb(p: CancellationPolicy) -> booking_pb2.CancellationPolicy:
    return booking_pb2.CancellationPolicy(
        full_refund_hours=p.full_refund_hours,
        late_refund_percent=p.late_refund_percent,
        reschedule_cutoff_hours=p.reschedule_cutoff_hours,
    )


def service_pb(s: Service) -> booking_pb2.Service:
    return booking_pb2.Service(
        service_id=str(s.id),
        clinic_id=str(s.clinic_id),
        name=s.name,
        description=s.description,
        duration_minutes=s.duration_minutes,
        price=money(s.price_minor, s.currency),
        capacity=s.capacity,
        species_allowed=[booking_pb2.Species.Value(f"SPECIES_{x}") for x in s.species_allowed],
        buffer_after_minutes=s.buffer_after_minutes,
        min_notice_minutes=s.min_notice_minutes,
        max_horizon_days=s.max_horizon_days,
        active=s.active,
        archived=s.archived,
        etag=s.etag,
        cancellation_policy=policy_pb(s.policy),
    )


def pet_pb(p: Pet) -> booking_pb2.Pet:
    out = booking_pb2.Pet(
        pet_id=str(p.id),
        owner_user_id=str(p.owner_user_id),
        name=p.name,
        species=booking_pb2.Species.Value(f"SPECIES_{p.species}"),
        birth_date=p.birth_date.isoformat() if p.birth_date else "",
        create_time=ts(p.created_at),
        notes=p.notes,
        etag=p.etag,
        archived=p.archived,
    )
    if p.breed:
        out.breed = p.breed
    if p.weight_grams is not None:
        out.weight_kg = p.weight_grams / 1000
    return out


def reservation_pb(r: Reservation) -> booking_pb2.Reservation:
    return booking_pb2.Reservation(
        lock_id=str(r.lock_id),
        state=booking_pb2.ReservationState.Value(f"RESERVATION_STATE_{r.state.value}"),
        service_id=str(r.service_id),
        clinic_id=str(r.clinic_id),
        pet_id=str(r.pet_id),
        owner_user_id=str(r.owner_user_id),
        slot_start_time=ts(r.start),
        slot_end_time=ts(r.end),
        expires_at=ts(r.expires_at),
        amount=money(r.amount_minor, r.currency),
        booking_id=str(r.booking_id) if r.booking_id else "",
        payment_id=str(r.payment_id) if r.payment_id else "",
        create_time=ts(r.created_at),
    )


def booking_pb(b: Booking, now: datetime | None = None) -> booking_pb2.Booking:
    """The booking; with ``now``, also what the owner may still do at that moment (from the domain)."""
    out = booking_pb2.Booking(
        booking_id=str(b.id),
        state=booking_pb2.BookingState.Value(f"BOOKING_STATE_{b.state.value}"),
        reservation_lock_id=str(b.lock_id),
        payment_id=str(b.payment_id),
        clinic_id=str(b.clinic_id),
        service_id=str(b.service_id),
        pet_id=str(b.pet_id),
        owner_user_id=str(b.owner_user_id),
        slot_start_time=ts(b.start),
        slot_end_time=ts(b.end),
        amount=money(b.amount_minor, b.currency),
        create_time=ts(b.created_at),
        cancel_time=ts(b.cancelled_at),
        cancellation_policy=policy_pb(b.policy),
        refund=booking_pb2.Refund(
            amount=money(b.refund_minor, b.currency),
            state=booking_pb2.RefundState.Value(f"REFUND_STATE_{b.refund_state.value}"),
            provider_refund_id=b.provider_refund_id,
            update_time=ts(b.refund_updated_at),
        ),
        cancel_reason=b.cancel_reason,
        cancelled_by=booking_pb2.BookingActor.Value(
            f"BOOKING_ACTOR_{b.cancelled_by.value if b.cancelled_by else 'UNSPECIFIED'}"
        ),
        update_time=ts(b.updated_at),
        reschedule_count=b.reschedule_count,
    )
    if now is not None:
        out.can_cancel = b.can_cancel(now)
        out.refund_if_cancelled_now.CopyFrom(money(b.refund_if_cancelled_now(now), b.currency))
        deadline = b.reschedule_deadline(now)
        if deadline is not None:
            out.reschedule_deadline.FromDatetime(deadline)
    return out
