"""The events adapter: Kafka's ``booking.created`` (protobuf BookingCreated) → the domain's notice,
and the clinic feed's event format (protobuf ClinicEvent with its cursor)."""

from __future__ import annotations

import uuid

from notif_worker.domain import BookingNotice, PoisonEvent
from petpro.convert import dt, ts
from petpro_api.booking.v1 import booking_pb2, events_pb2
from petpro_api.common.v1 import money_pb2
from petpro_api.notification.v1 import clinic_feed_pb2


def decode_booking_created(payload: bytes) -> BookingNotice:
    """protobuf ``BookingCreated`` → domain notice; anything unusable is a PoisonEvent."""
    try:
        e = events_pb2.BookingCreated.FromString(payload)
        notice = BookingNotice(
            event_id=uuid.UUID(e.event_id), occurred_at=dt(e.occurred_at), booking_id=e.booking_id,
            clinic_id=uuid.UUID(e.clinic_id), clinic_name=e.clinic_name, clinic_time_zone=e.clinic_time_zone or "UTC",
            service_name=e.service.name, start=dt(e.slot_start_time), end=dt(e.slot_end_time),
            pet_name=e.pet.name, pet_species=booking_pb2.Species.Name(e.pet.species),
            owner_user_id=uuid.UUID(e.owner.user_id), owner_email=e.owner.email, owner_name=e.owner.name,
            amount_minor=e.amount.amount_minor, currency=e.amount.currency,
        )
        notice.local_start  # noqa: B018 — validates the time zone
    except Exception as exc:
        raise PoisonEvent(f"undecodable booking.created event: {type(exc).__name__}: {exc}") from exc
    if not notice.booking_id or not notice.owner_email:
        raise PoisonEvent("booking.created event lacks booking_id or owner email")
    return notice


def encode_clinic_event(n: BookingNotice, cursor: int) -> bytes:
    return clinic_feed_pb2.ClinicEvent(
        cursor=cursor, event_id=str(n.event_id), type=clinic_feed_pb2.CLINIC_EVENT_TYPE_BOOKING_CREATED,
        occurred_at=ts(n.occurred_at),
        booking=clinic_feed_pb2.BookingSummary(
            booking_id=n.booking_id, service_name=n.service_name, slot_start_time=ts(n.start),
            slot_end_time=ts(n.end), pet_name=n.pet_name, pet_species=booking_pb2.Species.Value(n.pet_species),
            owner_name=n.owner_name, owner_email=n.owner_email,
            amount=money_pb2.Money(amount_minor=n.amount_minor, currency=n.currency),
        ),
    ).SerializeToString()


def clinic_event_cursor(payload: bytes) -> int:
    cursor: int = clinic_feed_pb2.ClinicEvent.FromString(payload).cursor
    return cursor
