"""Booking's use cases with a fake unit of work (no database): catalog, pets, reserve (idempotency,
capacity, expired holds, races), confirm (live hold, late payment reclaimed or lost), expiry, reads."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import replace
from datetime import UTC, date, datetime, time, timedelta

import pytest

from booking_svc.domain import (
    EVENT_BOOKING_CREATED,
    TOPIC_BOOKING_CREATED,
    Booking,
    BookingNotFound,
    BookingState,
    Clinic,
    ClinicNotFound,
    HoldAttempt,
    IdempotencyKeyReused,
    Interval,
    Pet,
    PetNotFound,
    PetNotOwned,
    Reservation,
    ReservationClosed,
    ReservationNotFound,
    ReservationState,
    Service,
    ServiceNotBookable,
    ServiceNotFound,
    SlotLost,
    SlotUnavailable,
)
from booking_svc.handlers import ReserveCommand
from booking_svc.ports import ReservationNews
from petpro.errors import InvalidArgument
from tests.unit.fakes.booking import (
    BookingStore,
    FakeBookingRepository,
    FakeReservationChanges,
    booking_use_cases,
)

NOW = datetime(2030, 1, 1, 9, tzinfo=UTC)
MONDAY = date(2030, 1, 7)
SLOT = datetime(2030, 1, 7, 8, 0, tzinfo=UTC)  # 09:00 in Berlin
HOLD = timedelta(minutes=10)


class Clock:
    def __init__(self, now: datetime = NOW) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


class Encoded:
    """The event encoder port: records what it was asked to encode."""

    def __init__(self) -> None:
        self.calls: list[tuple[uuid.UUID, Booking, Pet]] = []

    def __call__(
        self,
        event_id: uuid.UUID,
        booking: Booking,
        res: Reservation,
        svc: Service,
        clinic: Clinic,
        pet: Pet,
        now: datetime,
        sched: object = None,
    ) -> bytes:
        self.calls.append((event_id, booking, pet))
        return f"{booking.id}|{svc.name}|{clinic.name}|{pet.name}".encode()


@pytest.fixture
def world():
    store = BookingStore()
    clinic = Clinic(uuid.uuid4(), "Vet Mitte", "Europe/Berlin", {"mon": [Interval(time(9), time(12))]})
    svc = Service(uuid.uuid4(), clinic.id, "Check-up", 30, 4500, "EUR", capacity=1)
    owner = uuid.uuid4()
    pet = Pet(uuid.uuid4(), owner, "Rex", "DOG", created_at=NOW)
    store.clinics[clinic.id], store.services[svc.id], store.pets[pet.id] = clinic, svc, pet
    clock, encode = Clock(), Encoded()
    h = booking_use_cases(
        store, clock=clock, hold_ttl=HOLD, encode_created=encode, traceparent=lambda: "00-trace-span-01"
    )
    return h, store, h.uow, clock, encode, clinic, svc, owner, pet


def other_pet(store: BookingStore, owner: uuid.UUID, name: str = "Mia") -> Pet:
    """Another pet of the owner: one pet is never in two overlapping appointments (PET_BUSY)."""
    pet = Pet(uuid.uuid4(), owner, name, "DOG", created_at=NOW)
    store.pets[pet.id] = pet
    return pet


def cmd(
    svc: Service, owner: uuid.UUID, pet: Pet, request_id: str = "r1", start: datetime = SLOT
) -> ReserveCommand:
    return ReserveCommand(request_id, owner, "o@example.test", "Olga", svc.id, pet.id, start)


# -- catalog ------------------------------------------------------------------------------------------
async def test_catalog_reads_and_not_found(world):
    h, _store, *_, clinic, svc, _owner, _pet = world
    assert (await h.catalog.get_clinic(clinic.id)).name == "Vet Mitte"
    assert (await h.catalog.get_service(svc.id))[0].name == "Check-up"
    rows, token = await h.catalog.list_services(clinic.id, 10, "")
    assert [s.id for s in rows] == [svc.id] and token == ""
    with pytest.raises(ClinicNotFound):
        await h.catalog.get_clinic(uuid.uuid4())
    with pytest.raises(ClinicNotFound):
        await h.catalog.list_services(uuid.uuid4(), 10, "")
    with pytest.raises(ServiceNotFound):
        await h.catalog.get_service(uuid.uuid4())


async def test_list_services_reads_the_catalog_version_once_and_sees_a_committed_change(world):
    """The version read is a round trip per lookup: ListServices (the clinic, then its services) makes
    one, and the next request still sees a change committed in between (no TTL)."""
    h, store, *_, clinic, svc, _owner, _pet = world
    await h.catalog.list_services(clinic.id, 10, "")
    before = store.catalog_version_reads
    rows, _ = await h.catalog.list_services(clinic.id, 10, "")
    assert store.catalog_version_reads - before == 1 and [s.name for s in rows] == ["Check-up"]
    store.services[svc.id].name = "Check-up (long)"
    store.catalog_version += 1  # a committed catalog change
    rows, _ = await h.catalog.list_services(clinic.id, 10, "")
    assert [s.name for s in rows] == ["Check-up (long)"]


async def test_reserve_checks_the_catalog_version_in_its_own_statement(world):
    """A ReserveSlot for a service already in the memo makes no catalog-version round trip: its
    one statement compares the version.  A committed catalog change (here the capacity) is seen by
    that statement, which then inserts nothing and reports the version it saw, and the request is
    decided on the service loaded at that version."""
    h, store, *_, svc, owner, pet = world
    await h.reservations.reserve(cmd(svc, owner, pet, "a"))  # loads the service into the memo
    reads, holds = store.catalog_version_reads, store.holds
    with pytest.raises(SlotUnavailable):
        await h.reservations.reserve(cmd(svc, owner, other_pet(store, owner), "b"))  # capacity 1, taken
    assert (store.catalog_version_reads - reads, store.holds - holds) == (0, 1)
    store.services[svc.id].capacity = 2
    store.catalog_version += 1  # committed after the memo loaded the service
    second = await h.reservations.reserve(cmd(svc, owner, other_pet(store, owner), "c"))
    assert second.unit == 2  # decided with the new capacity, not refused with the old one
    assert store.catalog_version_reads - reads == 0  # the statement said which version it saw
    store.services[svc.id].active = False
    store.catalog_version += 1
    with pytest.raises(ServiceNotBookable):
        await h.reservations.reserve(cmd(svc, owner, pet, "d", start=SLOT + timedelta(minutes=30)))


async def test_list_clinics_pages_by_name(world):
    h, store, *_ = world
    for name in ("A", "B", "C"):
        c = Clinic(uuid.uuid4(), name, "UTC", {})
        store.clinics[c.id] = c
    first, token = await h.catalog.list_clinics(2, "")
    assert [c.name for c in first] == ["A", "B"] and token
    second, token2 = await h.catalog.list_clinics(2, token)
    assert [c.name for c in second] == ["C", "Vet Mitte"] and token2
    third, token3 = await h.catalog.list_clinics(2, token2)
    assert third == [] and token3 == ""


async def test_availability_counts_active_holds_and_rejects_bad_dates(world):
    h, _, _, _, _, _, svc, owner, pet = world
    before = await h.catalog.availability(svc.id, MONDAY.isoformat())
    assert [s.remaining for s in before[2]] == [1] * 6  # 09:00-12:00 in 30-minute slots
    await h.reservations.reserve(cmd(svc, owner, pet))
    _, _, slots = await h.catalog.availability(svc.id, MONDAY.isoformat())
    assert [s.remaining for s in slots] == [0, 1, 1, 1, 1, 1]
    with pytest.raises(InvalidArgument) as exc:
        await h.catalog.availability(svc.id, "2030-02-30")
    assert exc.value.violations[0].field == "date"


# -- pets ---------------------------------------------------------------------------------------------
async def test_create_pet_validates_birth_date_and_lists_by_owner(world):
    h, store, _uow, clock, *_ = world
    owner = uuid.uuid4()
    pet = await h.pets.create_pet(owner, "  Mia ", "CAT", "  ", "2025-03-01")
    assert (pet.name, pet.breed, pet.birth_date) == ("Mia", None, date(2025, 3, 1))
    assert store.pets[pet.id].owner_user_id == owner
    with pytest.raises(InvalidArgument) as exc:
        await h.pets.create_pet(owner, "Tom", "CAT", None, (clock.now.date() + timedelta(days=1)).isoformat())
    assert exc.value.violations[0].reason == "DATE_IN_FUTURE"
    with pytest.raises(InvalidArgument):
        await h.pets.create_pet(owner, "Tom", "CAT", None, "yesterday")
    rows, _ = await h.pets.list_pets(owner, 10, "")
    assert [p.id for p in rows] == [pet.id]


# -- reserve ------------------------------------------------------------------------------------------
async def test_reserve_holds_the_slot_until_the_ttl(world):
    h, store, _uow, _clock, _, clinic, svc, owner, pet = world
    res = await h.reservations.reserve(cmd(svc, owner, pet))
    assert res.state == ReservationState.HELD and res.expires_at == NOW + HOLD
    assert (res.start, res.end, res.amount_minor, res.clinic_id) == (
        SLOT,
        SLOT + timedelta(minutes=30),
        4500,
        clinic.id,
    )
    assert store.reservations[res.lock_id].state == ReservationState.HELD
    with pytest.raises(SlotUnavailable):
        await h.reservations.reserve(cmd(svc, owner, pet, "other"))


async def test_reserve_is_one_statement_without_a_transaction_in_the_common_case(world):
    """A free slot is held, and a live-held slot refused, by one statement each (``hold`` on the read
    connection): no unit of work is opened, nothing is rolled back."""
    h, store, uow, _, _, _, svc, owner, pet = world
    await h.reservations.reserve(cmd(svc, owner, pet, "warm"))  # the service into the memo
    holds = store.holds
    res = await h.reservations.reserve(cmd(svc, owner, pet, "a", start=SLOT + timedelta(minutes=30)))
    assert store.reservations[res.lock_id].unit == res.unit == 1
    with pytest.raises(SlotUnavailable):
        await h.reservations.reserve(cmd(svc, owner, pet, "b"))
    assert store.holds - holds == 2 and (uow.commits, uow.rollbacks) == (0, 0)


async def test_reserve_is_idempotent_per_request_id(world):
    h, store, _, _, _, _, svc, owner, pet = world
    first = await h.reservations.reserve(cmd(svc, owner, pet))
    again = await h.reservations.reserve(cmd(svc, owner, pet))
    assert again.lock_id == first.lock_id and len(store.reservations) == 1
    with pytest.raises(IdempotencyKeyReused):
        await h.reservations.reserve(cmd(svc, owner, pet, start=SLOT + timedelta(minutes=30)))


async def test_reserve_checks_pet_and_slot(world):
    h, _, _, _, _, _, svc, owner, pet = world
    with pytest.raises(PetNotOwned):
        await h.reservations.reserve(cmd(svc, uuid.uuid4(), pet, "x"))
    with pytest.raises(PetNotFound):
        await h.reservations.reserve(
            ReserveCommand("y", owner, "o@example.test", "", svc.id, uuid.uuid4(), SLOT)
        )
    with pytest.raises(InvalidArgument) as exc:
        await h.reservations.reserve(cmd(svc, owner, pet, "z", start=SLOT + timedelta(minutes=10)))
    assert exc.value.violations[0].reason == "SLOT_OFF_GRID"
    with pytest.raises(ServiceNotFound):
        await h.reservations.reserve(ReserveCommand("w", owner, "", "", uuid.uuid4(), pet.id, SLOT))


async def test_capacity_gives_each_reserver_its_own_unit(world):
    h, store, _, _, _, _, svc, owner, pet = world
    store.services[svc.id].capacity = 2
    store.catalog_version += 1  # a committed catalog change: the memo reloads
    a = await h.reservations.reserve(cmd(svc, owner, pet, "a"))
    b = await h.reservations.reserve(cmd(svc, owner, other_pet(store, owner), "b"))
    assert {a.unit, b.unit} == {1, 2}
    with pytest.raises(SlotUnavailable):
        await h.reservations.reserve(cmd(svc, owner, other_pet(store, owner), "c"))


async def test_an_expired_hold_never_blocks(world):
    h, store, _, clock, _, _, svc, owner, pet = world
    first = await h.reservations.reserve(cmd(svc, owner, pet, "a"))
    clock.now += HOLD  # the hold lapses; the sweeper has not run
    second = await h.reservations.reserve(cmd(svc, owner, pet, "b"))
    assert second.lock_id != first.lock_id
    assert store.reservations[first.lock_id].state == ReservationState.EXPIRED


class ConcurrentWinner(FakeBookingRepository):
    """The first ReserveSlot statement loses to a concurrent transaction: ``winner`` commits first,
    while the statement's snapshot saw the unit (and the request id) free."""

    winner: Reservation | None = None

    async def hold(self, res: Reservation, capacity: int, catalog_version: int) -> HoldAttempt:
        if ConcurrentWinner.winner is None:
            return await super().hold(res, capacity, catalog_version)
        winner, ConcurrentWinner.winner = ConcurrentWinner.winner, None
        assert (await super().hold(winner, capacity, catalog_version)).inserted
        return HoldAttempt(False, res.owner_user_id, winner.unit or 1, False, catalog_version)


async def test_a_unit_lost_to_a_concurrent_reserver_is_asked_again(world):
    h, store, uow, _, _, _, svc, owner, pet = world
    store.services[svc.id].capacity = 2
    store.catalog_version += 1
    first = await h.reservations.reserve(cmd(svc, owner, pet, "first"))  # the winner, to copy
    store.reservations.clear()
    h.read.repo = ConcurrentWinner
    ConcurrentWinner.winner = replace(first, lock_id=uuid.uuid4(), request_id="winner")
    res = await h.reservations.reserve(cmd(svc, owner, other_pet(store, owner), "b"))
    assert res.unit == 2 and len(store.reservations) == 2
    assert (uow.commits, uow.rollbacks) == (0, 0)  # no transaction: statements on the read connection


async def test_the_last_unit_lost_to_a_concurrent_reserver_is_a_clear_conflict(world):
    h, store, _, _, _, _, svc, owner, pet = world
    first = await h.reservations.reserve(cmd(svc, owner, pet, "first"))
    store.reservations.clear()
    h.read.repo = ConcurrentWinner
    ConcurrentWinner.winner = replace(first, lock_id=uuid.uuid4(), request_id="winner")
    with pytest.raises(SlotUnavailable):
        await h.reservations.reserve(cmd(svc, owner, pet, "b"))
    assert len(store.reservations) == 1


async def test_a_concurrent_retry_with_the_same_key_answers_like_the_winner(world):
    h, store, _, _, _, _, svc, owner, pet = world
    first = await h.reservations.reserve(cmd(svc, owner, pet, "same"))
    store.reservations.clear()
    h.read.repo = ConcurrentWinner
    ConcurrentWinner.winner = winner = replace(first, lock_id=uuid.uuid4())
    again = await h.reservations.reserve(cmd(svc, owner, pet, "same"))
    assert again.lock_id == winner.lock_id and len(store.reservations) == 1


async def test_a_retry_gets_its_first_answer_even_once_the_slot_is_past(world):
    """AIP-155: the retry of a request that was held answers as the first call did, whatever the rules
    would say about the request now."""
    h, _, _, clock, _, _, svc, owner, pet = world
    first = await h.reservations.reserve(cmd(svc, owner, pet, "k"))
    clock.now = SLOT + timedelta(hours=1)
    assert (await h.reservations.reserve(cmd(svc, owner, pet, "k"))).lock_id == first.lock_id
    with pytest.raises(InvalidArgument):
        await h.reservations.reserve(cmd(svc, owner, pet, "new"))


# -- confirm ------------------------------------------------------------------------------------------
async def test_confirm_a_live_hold_books_and_writes_the_event_in_the_same_unit_of_work(world):
    h, store, uow, _, encode, _clinic, svc, owner, pet = world
    res = await h.reservations.reserve(cmd(svc, owner, pet))
    pay = uuid.uuid4()
    commits = uow.commits
    booking = await h.reservations.confirm(res.lock_id, pay)
    assert booking.state is BookingState.CONFIRMED
    assert (booking.lock_id, booking.payment_id, booking.start, booking.amount_minor) == (
        res.lock_id,
        pay,
        SLOT,
        4500,
    )
    assert store.reservations[res.lock_id].state == ReservationState.CONFIRMED
    assert uow.commits == commits + 1
    [row] = store.outbox
    assert (row.topic, row.key, row.event_type, row.traceparent) == (
        TOPIC_BOOKING_CREATED,
        str(booking.id),
        EVENT_BOOKING_CREATED,
        "00-trace-span-01",
    )
    assert row.payload == f"{booking.id}|Check-up|Vet Mitte|Rex".encode()
    assert encode.calls[0][0] == row.event_id


async def test_confirm_is_idempotent_per_payment(world):
    h, store, _, _, _, _, svc, owner, pet = world
    res = await h.reservations.reserve(cmd(svc, owner, pet))
    pay = uuid.uuid4()
    first = await h.reservations.confirm(res.lock_id, pay)
    again = await h.reservations.confirm(res.lock_id, pay)
    assert again.id == first.id and len(store.bookings) == 1 and len(store.outbox) == 1
    with pytest.raises(ReservationClosed):
        await h.reservations.confirm(res.lock_id, uuid.uuid4())
    with pytest.raises(ReservationNotFound):
        await h.reservations.confirm(uuid.uuid4(), pay)


async def test_late_payment_confirms_when_the_slot_is_still_free(world):
    h, store, _, clock, _, _, svc, owner, pet = world
    res = await h.reservations.reserve(cmd(svc, owner, pet))
    clock.now += HOLD + timedelta(minutes=1)
    assert await h.reservations.expire_due() == [res.lock_id]
    booking = await h.reservations.confirm(res.lock_id, uuid.uuid4())
    assert booking.state is BookingState.CONFIRMED
    assert store.reservations[res.lock_id].state == ReservationState.CONFIRMED


async def test_late_payment_for_a_taken_slot_fails_the_reservation_and_asks_for_a_refund(world):
    h, store, _, clock, _, _, svc, owner, pet = world
    late = await h.reservations.reserve(cmd(svc, owner, pet, "late"))
    clock.now += HOLD
    winner = await h.reservations.reserve(cmd(svc, owner, pet, "winner"))
    await h.reservations.confirm(winner.lock_id, uuid.uuid4())
    pay = uuid.uuid4()
    with pytest.raises(SlotLost):
        await h.reservations.confirm(late.lock_id, pay)
    lost = store.reservations[late.lock_id]
    assert (lost.state, lost.failure_reason, lost.payment_id) == (ReservationState.FAILED, "SLOT_TAKEN", pay)
    assert len(store.bookings) == 1 and len(store.outbox) == 1  # only the winner's
    with pytest.raises(SlotLost):  # a redelivered webhook gets the same answer
        await h.reservations.confirm(late.lock_id, pay)


async def test_get_reservation_reports_a_lapsed_hold_as_expired_and_hides_others(world):
    h, _, _, clock, _, _, svc, owner, pet = world
    res = await h.reservations.reserve(cmd(svc, owner, pet))
    assert (await h.reservations.get_reservation(res.lock_id, owner)).state == ReservationState.HELD
    clock.now += HOLD
    assert (await h.reservations.get_reservation(res.lock_id, None)).state == ReservationState.EXPIRED
    with pytest.raises(ReservationNotFound):
        await h.reservations.get_reservation(res.lock_id, uuid.uuid4())


# -- GetReservation's long-poll ---------------------------------------------------------------------
WAIT = timedelta(seconds=25)


def long_poll_world(store: BookingStore, clock: Clock, changes: FakeReservationChanges):  # type: ignore[no-untyped-def]
    return booking_use_cases(store, clock=clock, hold_ttl=HOLD, changes=changes)


async def test_a_long_poll_answers_when_the_held_reservation_is_confirmed(world):
    """The answer waits while the hold is HELD and comes with the committed confirmation, after one
    read for the change (none while waiting)."""
    _, store, _, clock, _, _, svc, owner, pet = world
    changes = FakeReservationChanges()
    h = long_poll_world(store, clock, changes)
    res = await h.reservations.reserve(cmd(svc, owner, pet))
    poll = asyncio.create_task(h.reservations.await_reservation(res.lock_id, owner, WAIT))
    await changes.waiting.wait()
    booking = await h.reservations.confirm(res.lock_id, uuid.uuid4())
    got = await poll
    assert (got.state, got.booking_id) == (ReservationState.CONFIRMED, booking.id)
    assert changes.waits == [WAIT.total_seconds()]  # one wait, woken by the commit
    assert not changes.watches[res.lock_id]  # the watch ended with the call


@pytest.mark.parametrize("news", [True, False], ids=["signal-says-what-changed", "signal-says-nothing"])
async def test_a_long_poll_woken_by_a_change_that_says_what_it_is_answers_without_reading_again(world, news):
    """A wake with the committed state (migration 0013's NOTIFY) is the answer: one read in all, before
    the wait; a wake that says nothing reads again.  The answers are the same."""
    _, store, _, clock, _, _, svc, owner, pet = world
    changes = FakeReservationChanges(news=news)
    h = long_poll_world(store, clock, changes)
    res = await h.reservations.reserve(cmd(svc, owner, pet))
    reads = 0
    read = h.reservations.statements  # (the reader: the fakes have no statements pool)

    def counted():
        nonlocal reads
        reads += 1
        return read()

    h.reservations.statements = counted
    poll = asyncio.create_task(h.reservations.await_reservation(res.lock_id, owner, WAIT))
    await changes.waiting.wait()
    payment = uuid.uuid4()
    booking = await h.reservations.confirm(res.lock_id, payment)
    got = await poll
    assert (got.state, got.booking_id, got.payment_id) == (ReservationState.CONFIRMED, booking.id, payment)
    assert got == await h.reservations.get_reservation(res.lock_id, owner)
    assert reads == (2 if news else 3)  # (the last one: the comparison's)


async def test_a_long_poll_reads_again_when_the_change_is_not_all_in_the_signal(world):
    """A FAILED reservation's reason, or a confirmation whose booking is not committed with it, is not in
    the signal: the long-poll reads the reservation again."""
    _, store, _, clock, _, _, svc, owner, pet = world
    changes = FakeReservationChanges()
    h = long_poll_world(store, clock, changes)
    res = await h.reservations.reserve(cmd(svc, owner, pet))
    poll = asyncio.create_task(h.reservations.await_reservation(res.lock_id, owner, WAIT))
    await changes.waiting.wait()
    (w,) = changes.watches[res.lock_id]
    store.reservations[res.lock_id].state = ReservationState.FAILED
    store.reservations[res.lock_id].failure_reason = "SLOT_TAKEN"
    w.latest = ReservationNews(ReservationState.CONFIRMED, uuid.uuid4(), None)  # no booking: read again
    w.event.set()
    got = await poll
    assert (got.state, got.failure_reason) == (ReservationState.FAILED, "SLOT_TAKEN")


async def test_a_long_poll_returns_the_held_reservation_as_it_is_when_the_wait_is_over(world):
    _, store, _, clock, _, _, svc, owner, pet = world
    changes = FakeReservationChanges(clock)
    h = long_poll_world(store, clock, changes)
    res = await h.reservations.reserve(cmd(svc, owner, pet))
    start = clock.now
    got = await h.reservations.await_reservation(res.lock_id, owner, WAIT)
    assert got.state == ReservationState.HELD and clock.now == start + WAIT


async def test_a_long_poll_longer_than_the_hold_answers_expired_when_it_lapses(world):
    """A hold lapses at expires_at without a write (no change is signalled): the wait ends then."""
    _, store, _, clock, _, _, svc, owner, pet = world
    changes = FakeReservationChanges(clock)
    h = long_poll_world(store, clock, changes)
    res = await h.reservations.reserve(cmd(svc, owner, pet))
    got = await h.reservations.await_reservation(res.lock_id, owner, HOLD * 2)
    assert got.state == ReservationState.EXPIRED and clock.now == res.expires_at


async def test_a_long_poll_of_a_settled_or_foreign_reservation_answers_at_once(world):
    _, store, _, clock, _, _, svc, owner, pet = world
    changes = FakeReservationChanges()
    h = long_poll_world(store, clock, changes)
    res = await h.reservations.reserve(cmd(svc, owner, pet))
    with pytest.raises(ReservationNotFound):  # another owner's: not found, and no wait to time
        await h.reservations.await_reservation(res.lock_id, uuid.uuid4(), WAIT)
    await h.reservations.confirm(res.lock_id, uuid.uuid4())
    assert (
        await h.reservations.await_reservation(res.lock_id, owner, WAIT)
    ).state == ReservationState.CONFIRMED
    assert changes.waits == []


async def test_a_long_poll_answers_at_once_when_the_service_shuts_down(world):
    _, store, _, clock, _, _, svc, owner, pet = world
    changes = FakeReservationChanges()
    h = long_poll_world(store, clock, changes)
    res = await h.reservations.reserve(cmd(svc, owner, pet))
    poll = asyncio.create_task(h.reservations.await_reservation(res.lock_id, owner, WAIT))
    await changes.waiting.wait()
    changes.close()
    assert (await poll).state == ReservationState.HELD


# -- bookings -----------------------------------------------------------------------------------------
async def test_bookings_are_visible_to_their_owner_and_listed_by_clinic(world):
    h, _, _, _, _, clinic, svc, owner, pet = world
    res = await h.reservations.reserve(cmd(svc, owner, pet))
    booking = await h.reservations.confirm(res.lock_id, uuid.uuid4())
    assert (await h.lifecycle.get_booking(booking.id, owner)).id == booking.id
    assert (await h.lifecycle.get_booking(booking.id, None)).id == booking.id
    with pytest.raises(BookingNotFound):
        await h.lifecycle.get_booking(booking.id, uuid.uuid4())
    rows, _ = await h.lifecycle.list_bookings(
        owner=None, clinic=clinic.id, start_from=None, size=10, token=""
    )
    assert [b.id for b in rows] == [booking.id]
    rows, _ = await h.lifecycle.list_bookings(
        owner=owner, clinic=None, start_from=SLOT + timedelta(hours=1), size=10, token=""
    )
    assert rows == []
