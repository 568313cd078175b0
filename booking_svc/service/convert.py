"""pb ⟷ domain conversions both servicers need (the catalog, pets, reservations and bookings)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

from booking_svc.domain import (
    WEEKDAYS,
    Booking,
    CancellationPolicy,
    Clinic,
    ClinicSchedule,
    Interval,
    Pet,
    Provider,
    Reservation,
    Resource,
    Service,
    ServiceNeed,
    format_end,
)
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
        locale=c.locale,
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
        provider_ids=[str(p) for p in s.provider_ids],
        needs=[booking_pb2.ServiceNeed(resource_type=n.resource_type, quantity=n.quantity) for n in s.needs],
    )


def needs_from_pb(needs: Sequence[booking_pb2.ServiceNeed]) -> tuple[ServiceNeed, ...]:
    return tuple(ServiceNeed(n.resource_type.strip(), n.quantity) for n in needs)


def hours_pb(hours: dict[str, list[Interval]]) -> list[booking_pb2.OpeningHours]:
    return [
        booking_pb2.OpeningHours(
            weekday=booking_pb2.Weekday.ValueType(WEEKDAYS.index(day) + 1),
            open_time=iv.start.strftime("%H:%M"),
            close_time=format_end(iv.end),
        )
        for day in WEEKDAYS
        for iv in hours.get(day, [])
    ]


def provider_pb(p: Provider) -> booking_pb2.Provider:
    return booking_pb2.Provider(
        name=p.name,
        provider_id=str(p.id),
        clinic_id=str(p.clinic_id),
        display_name=p.display_name,
        user_id=str(p.user_id) if p.user_id else "",
        weekly_hours=hours_pb(p.weekly_hours),
        time_off=[
            booking_pb2.TimeOff(
                name=f"{p.name}/timeOff/{t.id}",
                time_off_id=str(t.id),
                start_time=ts(t.start),
                end_time=ts(t.end),
                reason=t.reason,
            )
            for t in p.time_off
        ],
        archived=p.archived,
        etag=p.etag,
    )


def resource_pb(r: Resource) -> booking_pb2.Resource:
    return booking_pb2.Resource(
        name=r.name,
        resource_id=str(r.id),
        clinic_id=str(r.clinic_id),
        display_name=r.display_name,
        resource_type=r.resource_type,
        species=[booking_pb2.Species.Value(f"SPECIES_{x}") for x in r.species],
        archived=r.archived,
        etag=r.etag,
    )


def provider_ref(p: Provider) -> booking_pb2.ProviderRef:
    return booking_pb2.ProviderRef(provider_id=str(p.id), display_name=p.display_name)


def assignment_refs(
    provider_id: uuid.UUID | None,
    resource_ids: Sequence[uuid.UUID],
    assignment: str | None,
    sched: ClinicSchedule | None,
) -> tuple[booking_pb2.ProviderRef | None, list[booking_pb2.ResourceRef], int]:
    """The assignment of a reservation or booking as the API shows it (names from the clinic's schedule)."""
    provider = None
    if provider_id is not None:
        p = sched.providers.get(provider_id) if sched else None
        provider = booking_pb2.ProviderRef(
            provider_id=str(provider_id), display_name=p.display_name if p else ""
        )
    items = {r.id: r for r in sched.resources} if sched else {}
    refs = [
        booking_pb2.ResourceRef(
            resource_id=str(i),
            display_name=items[i].display_name if i in items else "",
            resource_type=items[i].resource_type if i in items else "",
        )
        for i in resource_ids
    ]
    rule = booking_pb2.AssignmentRule.Value(f"ASSIGNMENT_RULE_{assignment}") if assignment else 0
    return provider, refs, rule


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


def reservation_pb(r: Reservation, sched: ClinicSchedule | None = None) -> booking_pb2.Reservation:
    provider, items, rule = assignment_refs(r.provider_id, r.resource_ids, r.assignment, sched)
    out = booking_pb2.Reservation(
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
        resources=items,
        assignment=booking_pb2.AssignmentRule.ValueType(rule),
    )
    if provider is not None:
        out.provider.CopyFrom(provider)
    return out


def booking_pb(
    b: Booking, now: datetime | None = None, sched: ClinicSchedule | None = None
) -> booking_pb2.Booking:
    """The booking; with ``now``, also what the owner may still do at that moment (from the domain)."""
    provider, items, rule = assignment_refs(b.provider_id, b.resource_ids, b.assignment, sched)
    out = booking_pb2.Booking(
        booking_id=str(b.id),
        state=booking_pb2.BookingState.Value(f"BOOKING_STATE_{b.state.value}"),
        reservation_lock_id=str(b.lock_id),
        payment_id=str(b.payment_id) if b.payment_id else "",
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
        pay_at_clinic=b.pay_at_clinic,
        resources=items,
        assignment=booking_pb2.AssignmentRule.ValueType(rule),
    )
    if provider is not None:
        out.provider.CopyFrom(provider)
    if now is not None:
        out.can_cancel = b.can_cancel(now)
        out.refund_if_cancelled_now.CopyFrom(money(b.refund_if_cancelled_now(now), b.currency))
        deadline = b.reschedule_deadline(now)
        if deadline is not None:
            out.reschedule_deadline.FromDatetime(deadline)
    return out
