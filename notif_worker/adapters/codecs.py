"""The protobuf codecs: the booking topics' events (BookingCreated, BookingCancelled,
BookingRescheduled, BookingOutcomeRecorded) → the domain's notice, and the clinic feed's event format
(ClinicEvent with its cursor)."""

from __future__ import annotations

import uuid
from dataclasses import replace

from notif_worker.domain import BookingNotice, PoisonEvent
from petpro import mesh
from petpro.convert import dt, ts
from petpro_api.booking.v1 import booking_pb2, events_pb2
from petpro_api.common.v1 import money_pb2
from petpro_api.notification.v1 import clinic_feed_pb2


def decode_booking_created(payload: bytes) -> BookingNotice:
    """protobuf ``BookingCreated`` → domain notice; anything unusable is a PoisonEvent."""
    try:
        e = events_pb2.BookingCreated.FromString(payload)
        notice = BookingNotice(
            event_id=uuid.UUID(e.event_id),
            occurred_at=dt(e.occurred_at),
            booking_id=e.booking_id,
            clinic_id=uuid.UUID(e.clinic_id),
            clinic_name=e.clinic_name,
            clinic_time_zone=e.clinic_time_zone or "UTC",
            service_name=e.service.name,
            start=dt(e.slot_start_time),
            end=dt(e.slot_end_time),
            pet_name=e.pet.name,
            pet_species=booking_pb2.Species.Name(e.pet.species),
            owner_user_id=uuid.UUID(e.owner.user_id),
            owner_email=e.owner.email,
            owner_name=e.owner.name,
            amount_minor=e.amount.amount_minor,
            currency=e.amount.currency,
            reminder_offsets=tuple(e.reminder_offsets_minutes),
            owner_locale=e.owner.locale,
            clinic_locale=e.clinic_locale,
            clinic_address=e.clinic_address,
            provider_id=e.provider.provider_id,
            provider_name=e.provider.display_name,
            resources=tuple((r.resource_id, r.display_name, r.resource_type) for r in e.resources),
            pay_at_clinic=e.pay_at_clinic,
        )
        notice.local_start  # noqa: B018 — validates the time zone
    except Exception as exc:
        raise PoisonEvent(f"undecodable booking.created event: {type(exc).__name__}: {exc}") from exc
    if not notice.booking_id or not notice.owner_email:
        raise PoisonEvent("booking.created event lacks booking_id or owner email")
    return notice


# topic (the mesh manifest's lifecycle topics) → (kind, feed event type, booking state after it)
CHANGE_TOPICS = {
    mesh.BOOKING_CANCELLED.name: (
        "cancelled",
        clinic_feed_pb2.CLINIC_EVENT_TYPE_BOOKING_CANCELLED,
        booking_pb2.BOOKING_STATE_CANCELLED,
    ),
    mesh.BOOKING_RESCHEDULED.name: (
        "rescheduled",
        clinic_feed_pb2.CLINIC_EVENT_TYPE_BOOKING_RESCHEDULED,
        booking_pb2.BOOKING_STATE_CONFIRMED,
    ),
    mesh.BOOKING_COMPLETED.name: (
        "completed",
        clinic_feed_pb2.CLINIC_EVENT_TYPE_BOOKING_COMPLETED,
        booking_pb2.BOOKING_STATE_COMPLETED,
    ),
    mesh.BOOKING_NO_SHOW.name: (
        "no_show",
        clinic_feed_pb2.CLINIC_EVENT_TYPE_BOOKING_NO_SHOW,
        booking_pb2.BOOKING_STATE_NO_SHOW,
    ),
}
KIND_TYPES = {
    "created": (clinic_feed_pb2.CLINIC_EVENT_TYPE_BOOKING_CREATED, booking_pb2.BOOKING_STATE_CONFIRMED),
    **{kind: (t, s) for kind, t, s in CHANGE_TOPICS.values()},
}


def decode_event(topic: str, payload: bytes) -> BookingNotice:
    """Any booking topic's event → the domain notice."""
    if topic in CHANGE_TOPICS:
        return decode_booking_change(topic, payload)
    return decode_booking_created(payload)


def decode_booking_change(topic: str, payload: bytes) -> BookingNotice:
    """protobuf BookingCancelled / BookingRescheduled / BookingOutcomeRecorded → domain notice."""
    kind = CHANGE_TOPICS[topic][0]
    try:
        msg: events_pb2.BookingCancelled | events_pb2.BookingRescheduled | events_pb2.BookingOutcomeRecorded
        if kind == "cancelled":
            msg = events_pb2.BookingCancelled.FromString(payload)
        elif kind == "rescheduled":
            msg = events_pb2.BookingRescheduled.FromString(payload)
        else:
            msg = events_pb2.BookingOutcomeRecorded.FromString(payload)
        c = msg.context
        notice = BookingNotice(
            event_id=uuid.UUID(c.event_id),
            occurred_at=dt(c.occurred_at),
            booking_id=c.booking_id,
            clinic_id=uuid.UUID(c.clinic_id),
            clinic_name=c.clinic_name,
            clinic_time_zone=c.clinic_time_zone or "UTC",
            service_name=c.service.name,
            start=dt(c.slot_start_time),
            end=dt(c.slot_end_time),
            pet_name=c.pet.name,
            pet_species=booking_pb2.Species.Name(c.pet.species),
            owner_user_id=uuid.UUID(c.owner.user_id),
            owner_email=c.owner.email,
            owner_name=c.owner.name,
            amount_minor=0,
            currency="",
            kind=kind,
            version=c.version,
            actor=booking_pb2.BookingActor.Name(c.actor).removeprefix("BOOKING_ACTOR_"),
            owner_locale=c.owner.locale,
            clinic_locale=c.clinic_locale,
            clinic_address=c.clinic_address,
            provider_id=c.provider.provider_id,
            provider_name=c.provider.display_name,
            resources=tuple((r.resource_id, r.display_name, r.resource_type) for r in c.resources),
            pay_at_clinic=c.pay_at_clinic,
        )
        if isinstance(msg, events_pb2.BookingCancelled):
            notice = replace(
                notice,
                refund_minor=msg.refund_amount.amount_minor,
                currency=msg.refund_amount.currency,
                reason=msg.reason,
            )
        elif isinstance(msg, events_pb2.BookingRescheduled):
            notice = replace(notice, previous_start=dt(msg.previous_start_time))
        notice.local_start  # noqa: B018 — validates the time zone
    except Exception as exc:
        raise PoisonEvent(f"undecodable {topic} event: {type(exc).__name__}: {exc}") from exc
    if not notice.booking_id or not notice.owner_email:
        raise PoisonEvent(f"{topic} event lacks booking_id or owner email")
    return notice


def encode_clinic_event(n: BookingNotice, cursor: int) -> bytes:
    event_type, state = KIND_TYPES[n.kind]
    summary = clinic_feed_pb2.BookingSummary(
        booking_id=n.booking_id,
        service_name=n.service_name,
        slot_start_time=ts(n.start),
        slot_end_time=ts(n.end),
        pet_name=n.pet_name,
        pet_species=booking_pb2.Species.Value(n.pet_species),
        owner_name=n.owner_name,
        owner_email=n.owner_email,
        state=state,
        version=n.version,
        reason=n.reason,
        resources=[
            booking_pb2.ResourceRef(resource_id=i, display_name=name, resource_type=kind)
            for i, name, kind in n.resources
        ],
        pay_at_clinic=n.pay_at_clinic,
    )
    if n.provider_id:
        summary.provider.CopyFrom(
            booking_pb2.ProviderRef(provider_id=n.provider_id, display_name=n.provider_name)
        )
    if n.kind == "created":
        summary.amount.CopyFrom(money_pb2.Money(amount_minor=n.amount_minor, currency=n.currency))
    if n.kind == "cancelled":
        summary.refund_amount.CopyFrom(money_pb2.Money(amount_minor=n.refund_minor, currency=n.currency))
    if n.previous_start is not None:
        summary.previous_start_time.FromDatetime(n.previous_start)
    return clinic_feed_pb2.ClinicEvent(
        cursor=cursor,
        event_id=str(n.event_id),
        type=event_type,
        occurred_at=ts(n.occurred_at),
        booking=summary,
    ).SerializeToString()


def clinic_event_cursor(payload: bytes) -> int:
    cursor: int = clinic_feed_pb2.ClinicEvent.FromString(payload).cursor
    return cursor


def cursor_field(cursor: int) -> bytes:
    """ClinicEvent's field 1 (the cursor: tag 0x08, then the varint).  The encoder writes fields in
    number order and leaves a zero cursor out, so ``cursor_field(c) + encode_clinic_event(n, 0)`` is
    byte for byte ``encode_clinic_event(n, c)``: the repository stores the feed row that way, adding the
    cursor it takes in the same statement (``adapters.repository._VARINT``)."""
    out = bytearray(b"\x08")
    while True:
        byte, cursor = cursor & 0x7F, cursor >> 7
        out.append(byte | (0x80 if cursor else 0))
        if not cursor:
            return bytes(out)


def scrub_clinic_event(payload: bytes, booking_id: str) -> bytes:
    """The clinic feed row of ``booking_id`` without the owner's name and email and the pet's name (a
    deleted account); the booking, its times, amounts and state stay for the clinic."""
    event = clinic_feed_pb2.ClinicEvent.FromString(payload)
    if event.booking.booking_id != booking_id:
        return payload
    event.booking.owner_name = ""
    event.booking.owner_email = ""
    event.booking.pet_name = ""
    return event.SerializeToString()
