"""Staff operations' use cases on the fakes (issue 20): a booking confirmed to be paid at the clinic, and
staff moves (time, provider, items) in one transaction that changes nothing when refused."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, time, timedelta

import pytest

from booking_svc.domain import (
    TOPIC_BOOKING_CREATED,
    TOPIC_BOOKING_RESCHEDULED,
    Actor,
    BookingNotFound,
    BookingStarted,
    Clinic,
    Interval,
    Pet,
    PetBusy,
    ProviderTaken,
    ProviderUnavailable,
    RefundState,
    ReservationClosed,
    ReservationNotFound,
    ResourceTaken,
    SameSlot,
    Service,
    ServiceNeed,
    SlotUnavailable,
)
from booking_svc.domain.schedule import Provider, Resource
from booking_svc.handlers import ReserveCommand
from petpro.errors import InvalidArgument
from tests.unit.fakes.booking import BookingStore, BookingUseCases, booking_use_cases

NOW = datetime(2030, 1, 1, 9, tzinfo=UTC)
MONDAY = datetime(2030, 1, 7, 8, 0, tzinfo=UTC)  # 09:00 in Berlin
HOURS = {"mon": [Interval(time(9), time(12))]}


class Clock:
    def __init__(self, now: datetime = NOW) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def world() -> tuple[
    BookingUseCases, BookingStore, Clock, Clinic, Service, Service, list[Provider], list[Resource]
]:
    """A clinic with a capacity-1 service and a dental service (1 of two vets + 1 of two rooms)."""
    store, clock = BookingStore(), Clock()
    clinic = Clinic(uuid.uuid4(), "Vet", "Europe/Berlin", HOURS)
    plain = Service(uuid.uuid4(), clinic.id, "Check-up", 30, 4500, "EUR", capacity=1)
    dental = Service(uuid.uuid4(), clinic.id, "Dental", 30, 9000, "EUR", capacity=1)
    vets = [
        Provider(uuid.uuid4(), clinic.id, n, HOURS, seq=i) for i, n in enumerate(("Dr Weber", "Dr Okafor"), 1)
    ]
    rooms = [Resource(uuid.uuid4(), clinic.id, f"Dental {i}", "dental room", seq=i) for i in (1, 2)]
    dental.provider_ids = tuple(v.id for v in vets)
    dental.needs = (ServiceNeed("dental room", 1),)
    store.clinics[clinic.id] = clinic
    store.services[plain.id], store.services[dental.id] = plain, dental
    for v in vets:
        store.providers[v.id] = v
    for r in rooms:
        store.resources[r.id] = r
    return booking_use_cases(store, clock=clock), store, clock, clinic, plain, dental, vets, rooms


def pet(store: BookingStore, owner: uuid.UUID, name: str = "Rex") -> Pet:
    p = Pet(uuid.uuid4(), owner, name, "DOG", created_at=NOW)
    store.pets[p.id] = p
    return p


async def hold(
    h: BookingUseCases,
    svc: Service,
    owner: uuid.UUID,
    p: Pet,
    start: datetime,
    provider: uuid.UUID | None = None,
):
    return await h.reservations.reserve(
        ReserveCommand(
            str(uuid.uuid4()), owner, "o@example.test", "Olga", svc.id, p.id, start, provider_id=provider
        )
    )


async def test_a_hold_confirmed_unpaid_is_a_booking_to_pay_at_the_clinic_refunding_nothing():
    h, store, clock, clinic, plain, *_ = world()
    owner = uuid.uuid4()
    res = await hold(h, plain, owner, pet(store, owner), MONDAY)
    with pytest.raises(ReservationNotFound):  # another clinic's staff
        await h.reservations.confirm_unpaid(res.lock_id, uuid.uuid4())
    b = await h.reservations.confirm_unpaid(res.lock_id, clinic.id)
    assert (b.pay_at_clinic, b.payment_id, b.refund_if_cancelled_now(NOW)) == (True, None, 0)
    assert [e.topic for e in store.outbox] == [TOPIC_BOOKING_CREATED]
    again = await h.reservations.confirm_unpaid(res.lock_id, clinic.id)  # a retry
    assert again.id == b.id and len(store.outbox) == 1
    out = await h.lifecycle.cancel(str(uuid.uuid4()), b.id, Actor.CLINIC, "closed", clinic=clinic.id)
    assert (out.refund_minor, out.refund_state) == (0, RefundState.NONE)
    lapsed = await hold(h, plain, owner, pet(store, owner, "Max"), MONDAY + timedelta(hours=1))
    clock.now = lapsed.expires_at
    with pytest.raises(ReservationClosed):
        await h.reservations.confirm_unpaid(lapsed.lock_id, clinic.id)


async def test_staff_move_a_capacity_booking_in_time_only():
    h, store, clock, clinic, plain, *_ = world()
    owner, other = uuid.uuid4(), uuid.uuid4()
    b = await h.reservations.confirm_unpaid(
        (await hold(h, plain, owner, pet(store, owner), MONDAY)).lock_id, clinic.id
    )
    later = MONDAY + timedelta(hours=1)
    taken = await hold(h, plain, other, pet(store, other), later)
    key = str(uuid.uuid4())
    with pytest.raises(SlotUnavailable):
        await h.lifecycle.move(key, b.id, clinic.id, later, None, ())
    assert store.bookings[b.id].start == MONDAY and store.reservations[taken.lock_id].start == later
    moved = await h.lifecycle.move(key, b.id, clinic.id, MONDAY + timedelta(minutes=30), None, ())
    assert (moved.start, moved.reschedule_count) == (MONDAY + timedelta(minutes=30), 1)
    changes = [e for e in store.outbox if e.topic == TOPIC_BOOKING_RESCHEDULED]
    assert len(changes) == 1
    assert (await h.lifecycle.move(key, b.id, clinic.id, MONDAY + timedelta(minutes=30), None, ())).id == b.id
    with pytest.raises(SameSlot):
        await h.lifecycle.move(str(uuid.uuid4()), b.id, clinic.id, MONDAY + timedelta(minutes=30), None, ())
    with pytest.raises(InvalidArgument) as exc:
        await h.lifecycle.move(str(uuid.uuid4()), b.id, clinic.id, None, uuid.uuid4(), (uuid.uuid4(),))
    assert [v.field for v in exc.value.violations] == ["provider_id", "resource_ids"]
    with pytest.raises(BookingNotFound):
        await h.lifecycle.move(str(uuid.uuid4()), b.id, uuid.uuid4(), later, None, ())
    clock.now = moved.start
    with pytest.raises(BookingStarted):
        await h.lifecycle.move(str(uuid.uuid4()), b.id, clinic.id, later, None, ())


async def test_staff_move_to_another_vet_and_room_atomically():
    h, store, _, clinic, _, dental, (weber, okafor), (room1, room2) = world()
    owner, other = uuid.uuid4(), uuid.uuid4()
    mine = await hold(h, dental, owner, pet(store, owner), MONDAY, weber.id)
    b = await h.reservations.confirm_unpaid(mine.lock_id, clinic.id)
    assert (b.provider_id, b.resource_ids) == (weber.id, (room1.id,))
    later = MONDAY + timedelta(hours=1)
    theirs = await hold(h, dental, other, pet(store, other), later, okafor.id)  # Okafor + room 1 at 10:00
    assert store.reservations[theirs.lock_id].resource_ids == (room1.id,)
    moved = await h.lifecycle.move(str(uuid.uuid4()), b.id, clinic.id, None, okafor.id, (room2.id,))
    assert (moved.start, moved.provider_id, moved.resource_ids) == (MONDAY, okafor.id, (room2.id,))
    assert (store.bookings[b.id].provider_id, store.reservations[b.lock_id].resource_ids) == (
        okafor.id,
        (room2.id,),
    )
    # Dr Weber is free again at 09:00
    assert (await hold(h, dental, other, pet(store, other, "Tom"), MONDAY, weber.id)).provider_id == weber.id
    # onto 10:00: Okafor is taken (and with Weber, room 1 is); nothing changes
    with pytest.raises(ProviderTaken):
        await h.lifecycle.move(str(uuid.uuid4()), b.id, clinic.id, later, None, ())
    with pytest.raises(ResourceTaken):
        await h.lifecycle.move(str(uuid.uuid4()), b.id, clinic.id, later, weber.id, (room1.id,))
    after = store.bookings[b.id]
    assert (after.start, after.provider_id, after.resource_ids, after.reschedule_count) == (
        MONDAY,
        okafor.id,
        (room2.id,),
        1,
    )
    # field violations: a vet who does not perform it, rooms that are not what it needs, off hours
    with pytest.raises(InvalidArgument) as exc:
        await h.lifecycle.move(str(uuid.uuid4()), b.id, clinic.id, None, uuid.uuid4(), (room1.id, room2.id))
    assert [v.field for v in exc.value.violations] == ["provider_id", "resource_ids"]
    store.providers[weber.id].weekly_hours = {"mon": [Interval(time(9), time(10))]}
    with pytest.raises(ProviderUnavailable):
        await h.lifecycle.move(
            str(uuid.uuid4()), b.id, clinic.id, later + timedelta(minutes=30), weber.id, ()
        )
    # the pet of the booking has another appointment then
    busy_pet = store.pets[b.pet_id]
    await hold(h, dental, owner, busy_pet, MONDAY + timedelta(hours=2), weber.id)
    with pytest.raises(PetBusy):
        await h.lifecycle.move(str(uuid.uuid4()), b.id, clinic.id, MONDAY + timedelta(hours=2), None, ())
