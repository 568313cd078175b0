"""A deleted account's data in booking, with the fake unit of work: bookings to come are cancelled as
owner cancellations (refund by policy, booking.cancelled for the clinic), holds are cancelled, and
once those events are relayed the owner's personal data is anonymised, exactly once per event, with
paid bookings kept for the clinic's accounting."""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import replace
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


# -- notif: a deleted account ---------------------------------------------------------------------------
async def test_notif_erases_once_and_a_later_booking_event_tells_only_the_clinic_without_names():
    from notif_worker.adapters.codecs import encode_clinic_event
    from notif_worker.adapters.push import InboxPush
    from notif_worker.handlers import AccountErasure, NotifyHandlers, Retry
    from petpro_api.notification.v1 import clinic_feed_pb2
    from tests.unit.fakes.notif import LiveHub, NotifStore, RecordingMailer, notif_uow
    from tests.unit.test_notif_handlers import CLINIC, notice

    store, mailer, hub = NotifStore(), RecordingMailer(), LiveHub()
    uow = notif_uow(store)
    accounts = AccountErasure(uow, uow)
    notifier = NotifyHandlers(
        uow, mailer, InboxPush(), encode_clinic_event, hub.publish, Retry(3, 0, 0), accounts=accounts
    )
    before = notice()
    await notifier.notify(before)  # the owner's confirmation: inbox, email, feed
    owner = before.owner_user_id
    assert [r.user_id for r in store.inbox] == [owner] and mailer.sent == [before]
    digest = hashlib.sha256(before.owner_email.encode()).hexdigest()
    event = AccountDeleted(uuid.uuid4(), owner, (digest,), NOW)
    await accounts.erase(event)
    await accounts.erase(event)  # a redelivery
    assert store.inbox == [] and len(store.erased) == 1
    assert all(not r.startswith("o@") for (_, _, r) in store.deliveries)

    later = replace(notice(), owner_user_id=owner, event_id=uuid.uuid4())  # booking.cancelled, applied late
    await notifier.notify(later)
    assert mailer.sent == [before] and store.inbox == []  # nothing more to the deleted account
    row = clinic_feed_pb2.ClinicEvent.FromString(store.feed[CLINIC][-1][1].payload)
    assert (
        row.booking.booking_id,
        row.booking.owner_email,
        row.booking.owner_name,
        row.booking.pet_name,
    ) == (
        later.booking_id,
        "",
        "",
        "",
    )


# -- payment: a deleted account ---------------------------------------------------------------------------
async def test_payment_anonymises_the_customer_once():
    from payment_svc.domain import PaymentStatus
    from payment_svc.handlers import Customers
    from tests.contracts.payment_repository import payment
    from tests.unit.fakes.payment import PaymentStore, payment_uow

    store = PaymentStore()
    p = replace(payment(NOW, status=PaymentStatus.SUCCEEDED), customer_email="Ann@Example.test")
    store.payments[p.id] = p
    uow = payment_uow(store)
    customers = Customers(uow, uow, clock=lambda: NOW)
    assert (await customers.export([p.order_ref], ""))["payments"][0]["customer_email"] == "Ann@Example.test"
    event = AccountDeleted(
        uuid.uuid4(), uuid.uuid4(), (hashlib.sha256(b"ann@example.test").hexdigest(),), NOW
    )
    await customers.erase(event)
    assert store.payments[p.id].customer_email == ""
    store.payments[p.id].customer_email = "again@example.test"
    await customers.erase(event)  # a redelivery changes nothing
    assert store.payments[p.id].customer_email == "again@example.test"
