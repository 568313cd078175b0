"""Protobuf codecs of the events booking writes to its outbox: ``booking.created`` (BookingCreated) and the
lifecycle events (BookingCancelled, BookingRescheduled, BookingOutcomeRecorded)."""

from __future__ import annotations

import uuid
from datetime import datetime

from booking_svc.domain import (
    TOPIC_BOOKING_CANCELLED,
    TOPIC_BOOKING_RESCHEDULED,
    Booking,
    Clinic,
    ClinicSchedule,
    Pet,
    Reservation,
    Service,
)
from booking_svc.ports import Change
from petpro.convert import ts
from petpro_api.booking.v1 import booking_pb2, events_pb2
from petpro_api.common.v1 import money_pb2


def _money(amount_minor: int, currency: str) -> money_pb2.Money:
    return money_pb2.Money(amount_minor=amount_minor, currency=currency)


def _owner(res: Reservation) -> events_pb2.BookingCreated.Owner:
    """How to reach the owner, in their language (the locale their token carried when they booked)."""
    return events_pb2.BookingCreated.Owner(
        user_id=str(res.owner_user_id), email=res.owner_email, name=res.owner_name, locale=res.owner_locale
    )


def _assignment(
    booking: Booking, sched: ClinicSchedule | None
) -> tuple[booking_pb2.ProviderRef | None, list[booking_pb2.ResourceRef]]:
    """The booking's provider and items with their names (docs/design/scheduling.md)."""
    provider = None
    if booking.provider_id is not None:
        p = sched.providers.get(booking.provider_id) if sched else None
        provider = booking_pb2.ProviderRef(
            provider_id=str(booking.provider_id), display_name=p.display_name if p else ""
        )
    items = {r.id: r for r in sched.resources} if sched else {}
    refs = [
        booking_pb2.ResourceRef(
            resource_id=str(i),
            display_name=items[i].display_name if i in items else "",
            resource_type=items[i].resource_type if i in items else "",
        )
        for i in booking.resource_ids
    ]
    return provider, refs


def encode_booking_created(
    event_id: uuid.UUID,
    booking: Booking,
    res: Reservation,
    svc: Service,
    clinic: Clinic,
    pet: Pet,
    now: datetime,
    sched: ClinicSchedule | None = None,
    /,
) -> bytes:
    """The ``booking.created`` event (protobuf ``petpro.booking.v1.BookingCreated``) for the outbox."""
    provider, items = _assignment(booking, sched)
    return events_pb2.BookingCreated(
        provider=provider,
        resources=items,
        assignment=booking_pb2.AssignmentRule.Value(f"ASSIGNMENT_RULE_{booking.assignment}")
        if booking.assignment
        else booking_pb2.ASSIGNMENT_RULE_UNSPECIFIED,
        event_id=str(event_id),
        occurred_at=ts(now),
        booking_id=str(booking.id),
        clinic_id=str(clinic.id),
        clinic_name=clinic.name,
        clinic_time_zone=clinic.time_zone,
        service=events_pb2.BookingCreated.Service(service_id=str(svc.id), name=svc.name),
        slot_start_time=ts(booking.start),
        slot_end_time=ts(booking.end),
        pet=events_pb2.BookingCreated.Pet(
            pet_id=str(pet.id), name=pet.name, species=booking_pb2.Species.Value(f"SPECIES_{pet.species}")
        ),
        owner=_owner(res),
        amount=_money(booking.amount_minor, booking.currency),
        reservation_lock_id=str(res.lock_id),
        payment_id=str(booking.payment_id) if booking.payment_id else "",
        reminder_offsets_minutes=list(clinic.reminder_offsets_minutes),
        clinic_address=clinic.address,
        clinic_locale=clinic.locale,
        pay_at_clinic=booking.pay_at_clinic,
    ).SerializeToString()


def encode_booking_change(
    event_id: uuid.UUID,
    change: Change,
    res: Reservation,
    svc: Service,
    clinic: Clinic,
    pet: Pet,
    now: datetime,
    sched: ClinicSchedule | None = None,
    /,
) -> bytes:
    """A lifecycle event (BookingCancelled, BookingRescheduled, BookingOutcomeRecorded) for the outbox."""
    b = change.booking
    provider, items = _assignment(b, sched)
    ctx = events_pb2.BookingChangeContext(
        provider=provider,
        resources=items,
        event_id=str(event_id),
        occurred_at=ts(now),
        booking_id=str(b.id),
        clinic_id=str(clinic.id),
        clinic_name=clinic.name,
        clinic_time_zone=clinic.time_zone,
        service=events_pb2.BookingCreated.Service(service_id=str(svc.id), name=svc.name),
        pet=events_pb2.BookingCreated.Pet(
            pet_id=str(pet.id), name=pet.name, species=booking_pb2.Species.Value(f"SPECIES_{pet.species}")
        ),
        owner=_owner(res),
        slot_start_time=ts(b.start),
        slot_end_time=ts(b.end),
        version=b.version,
        actor=booking_pb2.BookingActor.Value(f"BOOKING_ACTOR_{change.actor.value}"),
        clinic_address=clinic.address,
        clinic_locale=clinic.locale,
        pay_at_clinic=b.pay_at_clinic,
    )
    if change.topic == TOPIC_BOOKING_CANCELLED:
        return events_pb2.BookingCancelled(
            context=ctx, reason=b.cancel_reason, refund_amount=_money(b.refund_minor, b.currency)
        ).SerializeToString()
    if change.topic == TOPIC_BOOKING_RESCHEDULED:
        return events_pb2.BookingRescheduled(
            context=ctx,
            previous_start_time=ts(change.previous_start),
            previous_end_time=ts(change.previous_end),
        ).SerializeToString()
    return events_pb2.BookingOutcomeRecorded(
        context=ctx, outcome=booking_pb2.BookingState.Value(f"BOOKING_STATE_{b.state}")
    ).SerializeToString()
