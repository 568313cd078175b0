"""A deleted account's data in booking, with the fake unit of work: bookings to come are cancelled as
owner cancellations (refund by policy, booking.cancelled for the clinic), holds are cancelled, and
once those events are relayed the owner's personal data is anonymised, exactly once per event, with
paid bookings kept for the clinic's accounting."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest

from booking_svc.domain import TOPIC_BOOKING_CANCELLED, BookingState, RefundState, ReservationState
from booking_svc.handlers import OwnerHandlers, ReserveCommand
from booking_svc.handlers.owners import EventsPending
from petpro.erasure import AccountDeleted, decode_account_deleted, encode_account_deleted
from tests.unit.test_booking_lifecycle_handlers import NOW, SLOT, confirmed, world  # noqa: F401


def deleted(owner: uuid.UUID) -> AccountDeleted:
    return AccountDeleted(uuid.uuid4(), owner, ("ab" * 32,), NOW)


def relay_all(store) -> None:
    store.sent |= {e.event_id for e in store.outbox}


async def test_bookings_to_come_are_cancelled_then_the_owner_is_anonymised_once(world):  # noqa: F811
    h, store, clock, _refunds, _clinic, svc, owner, pet = world
    past = await confirmed(h, svc, owner, pet)
    future = await confirmed(h, svc, owner, pet, SLOT + timedelta(days=7))
    held = await h.reservations.reserve(
        ReserveCommand(
            "hold", owner, "o@example.test", "Olga", svc.id, pet.id, SLOT + timedelta(days=7, minutes=30)
        )
    )
    clock.now = SLOT + timedelta(days=1)  # the first booking is over, the other one is to come
    store.bookings[past.id].state = BookingState.COMPLETED
    other_owner_pet = await h.pets.create_pet(uuid.uuid4(), "Kim", "CAT", None, "")
    owners = OwnerHandlers(h.uow, h.read, h.lifecycle, clock=clock)
    event = deleted(owner)

    with pytest.raises(EventsPending):  # cancelled, but the relay has not sent the event yet
        await owners.erase(event)
    b = store.bookings[future.id]
    assert (b.state, b.cancelled_by, b.refund_minor, b.refund_state) == (
        BookingState.CANCELLED,
        "OWNER",
        4500,
        RefundState.PENDING,
    )
    assert [e.key for e in store.outbox if e.topic == TOPIC_BOOKING_CANCELLED] == [str(future.id)]
    assert store.reservations[held.lock_id].state == ReservationState.CANCELLED
    assert store.pets[pet.id].name == "Rex"  # nothing erased before the events are out

    relay_all(store)
    await owners.erase(event)  # the redelivery: the cancellation replays (no second event), then erasure
    assert [e.key for e in store.outbox if e.topic == TOPIC_BOOKING_CANCELLED] == []  # sent rows dropped
    assert (store.pets[pet.id].name, store.pets[pet.id].archived_at) == ("", clock.now)
    assert {
        (r.owner_email, r.owner_name) for r in store.reservations.values() if r.owner_user_id == owner
    } == {("", "")}
    kept = store.bookings[past.id]  # the paid booking stays, with its amount, for the clinic's accounting
    assert (kept.state, kept.amount_minor) == (BookingState.COMPLETED, 4500)
    assert store.pets[other_owner_pet.id].name == "Kim"

    store.pets[pet.id].name = "changed after"  # a third delivery does nothing at all
    await owners.erase(event)
    assert store.pets[pet.id].name == "changed after" and len(store.processed) == 1


async def test_export_lists_the_owners_rows_and_order_refs(world):  # noqa: F811
    h, _store, _clock, _refunds, _clinic, svc, owner, pet = world
    b = await confirmed(h, svc, owner, pet)
    owners = OwnerHandlers(h.uow, h.read, h.lifecycle)
    data, refs = await owners.export(owner)
    assert [p["name"] for p in data["pets"]] == ["Rex"]
    assert [x["id"] for x in data["bookings"]] == [str(b.id)] and refs == [str(b.lock_id)]
    assert (await owners.export(uuid.uuid4()))[0] == {"pets": [], "reservations": [], "bookings": []}


def test_the_event_round_trips_and_garbage_is_poison():
    from petpro.subscriber import PoisonRecord

    ev = deleted(uuid.uuid4())
    raw = encode_account_deleted(ev.event_id, ev.user_id, list(ev.email_sha256), ev.deleted_at)
    assert decode_account_deleted(ev.event_id, raw) == ev
    with pytest.raises(PoisonRecord):
        decode_account_deleted(ev.event_id, b"\xff\xff")
