"""The lifecycle use cases with a fake unit of work (no database, no payment service): cancel, reschedule
and outcomes as one transaction each (change + request id + outbox event), request-id replays, and the
refund dispatcher retrying a failing provider until it accepts — through fake ports."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, time, timedelta

import pytest

from booking_svc.domain import (
    TOPIC_BOOKING_CANCELLED,
    TOPIC_BOOKING_NO_SHOW,
    TOPIC_BOOKING_RESCHEDULED,
    Actor,
    Booking,
    BookingNotFound,
    BookingState,
    CancellationPolicy,
    Clinic,
    IdempotencyKeyReused,
    Interval,
    Pet,
    RefundState,
    Reservation,
    ReservationState,
    Service,
    SlotUnavailable,
)
from booking_svc.handlers import ReserveCommand, refund_request_id
from booking_svc.ports import Change, RefundResult
from tests.unit.fakes.booking import BookingStore, BookingUseCases, booking_use_cases

NOW = datetime(2030, 1, 1, 9, tzinfo=UTC)
SLOT = datetime(2030, 1, 7, 8, 0, tzinfo=UTC)  # Monday 09:00 in Berlin
POLICY = CancellationPolicy(full_refund_hours=24, late_refund_percent=50, reschedule_cutoff_hours=2)


class Clock:
    def __init__(self, now: datetime = NOW) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


class Refunds:
    """The RefundPort: fails ``failures`` times, then accepts; one refund per request id, like Stripe."""

    def __init__(self, failures: int = 0, status: str = "succeeded") -> None:
        self.failures = failures
        self.status = status
        self.calls: list[tuple[uuid.UUID, int, str]] = []
        self.made: dict[str, int] = {}
        self.statuses: dict[str, str] = {}  # per request id: its refund's status at the provider

    async def refund(
        self, payment_id: uuid.UUID, amount_minor: int, currency: str, request_id: str, reason: str
    ) -> RefundResult:
        self.calls.append((payment_id, amount_minor, request_id))
        if self.failures:
            self.failures -= 1
            raise RuntimeError("provider down")
        self.made.setdefault(request_id, amount_minor)
        status = self.statuses.get(request_id, self.status)
        return RefundResult(f"re_{list(self.made).index(request_id) + 1}", status)


def encode_change(
    event_id: uuid.UUID,
    change: Change,
    res: Reservation,
    svc: Service,
    clinic: Clinic,
    pet: Pet,
    now: datetime,
    sched: object = None,
) -> bytes:
    return f"{change.topic}|{change.booking.version}|{change.actor}".encode()


@pytest.fixture
def world():
    store = BookingStore()
    clinic = Clinic(uuid.uuid4(), "Vet", "Europe/Berlin", {"mon": [Interval(time(9), time(12))]})
    svc = Service(uuid.uuid4(), clinic.id, "Check-up", 30, 4500, "EUR", policy=POLICY)
    owner = uuid.uuid4()
    pet = Pet(uuid.uuid4(), owner, "Rex", "DOG", created_at=NOW)
    store.clinics[clinic.id], store.services[svc.id], store.pets[pet.id] = clinic, svc, pet
    clock, refunds = Clock(), Refunds()
    h = booking_use_cases(
        store,
        clock=clock,
        encode_change=encode_change,
        refunds=refunds,
        refund_retry_max=timedelta(seconds=30),
    )
    return h, store, clock, refunds, clinic, svc, owner, pet


async def confirmed(
    h: BookingUseCases, svc: Service, owner: uuid.UUID, pet: Pet, start: datetime = SLOT
) -> Booking:
    res = await h.reservations.reserve(
        ReserveCommand(str(uuid.uuid4()), owner, "o@example.test", "Olga", svc.id, pet.id, start)
    )
    return await h.reservations.confirm(res.lock_id, uuid.uuid4())


def rid() -> str:
    return str(uuid.uuid4())


async def test_confirm_copies_the_service_policy(world):
    h, store, *_, svc, owner, pet = world
    b = await confirmed(h, svc, owner, pet)
    store.services[svc.id].policy = CancellationPolicy(full_refund_hours=0, late_refund_percent=0)
    assert store.bookings[b.id].policy == POLICY


async def test_cancel_frees_the_slot_writes_the_event_and_a_retry_answers_the_same(world):
    h, store, _clock, _, _, svc, owner, pet = world
    b = await confirmed(h, svc, owner, pet)
    key = rid()
    out = await h.lifecycle.cancel(key, b.id, Actor.OWNER, "", owner=owner)
    assert (out.state, out.refund_minor, out.refund_state) == (
        BookingState.CANCELLED,
        4500,
        RefundState.PENDING,
    )
    assert store.reservations[b.lock_id].state == ReservationState.CANCELLED
    events = [r for r in store.outbox if r.topic == TOPIC_BOOKING_CANCELLED]
    assert [(e.key, e.payload) for e in events] == [(str(b.id), b"booking.cancelled|2|OWNER")]
    again = await h.lifecycle.cancel(key, b.id, Actor.OWNER, "", owner=owner)
    assert again.id == b.id and len(store.outbox) == 2  # created + one cancelled: no second event
    with pytest.raises(IdempotencyKeyReused):
        await h.lifecycle.cancel(key, b.id, Actor.OWNER, "another reason", owner=owner)


async def test_foreign_owner_or_clinic_gets_not_found_and_nothing_changes(world):
    h, store, _, _, _clinic, svc, owner, pet = world
    b = await confirmed(h, svc, owner, pet)
    for kwargs in ({"owner": uuid.uuid4()}, {"clinic": uuid.uuid4()}):
        with pytest.raises(BookingNotFound):
            await h.lifecycle.cancel(
                rid(), b.id, Actor.OWNER if "owner" in kwargs else Actor.CLINIC, "x", **kwargs
            )
    with pytest.raises(BookingNotFound):
        await h.lifecycle.record_outcome(rid(), b.id, uuid.uuid4(), BookingState.COMPLETED)
    assert store.bookings[b.id].state == BookingState.CONFIRMED and len(store.outbox) == 1


async def test_reschedule_moves_the_hold_or_changes_nothing_when_the_target_is_taken(world):
    h, store, _clock, _, _, svc, owner, pet = world
    b = await confirmed(h, svc, owner, pet)
    other = await confirmed(h, svc, owner, pet, SLOT + timedelta(minutes=30))
    with pytest.raises(SlotUnavailable):
        await h.lifecycle.reschedule(rid(), b.id, owner, other.start)
    assert store.bookings[b.id].start == SLOT and store.reservations[b.lock_id].start == SLOT
    moved = await h.lifecycle.reschedule(rid(), b.id, owner, SLOT + timedelta(hours=1))
    assert (moved.start, moved.reschedule_count, moved.version) == (SLOT + timedelta(hours=1), 1, 2)
    assert store.reservations[b.lock_id].start == SLOT + timedelta(hours=1)
    assert [r.topic for r in store.outbox].count(TOPIC_BOOKING_RESCHEDULED) == 1


async def test_reschedule_onto_a_lapsed_hold_takes_its_slot(world):
    """A lapsed hold never blocks a move either (the move expires it; its race with the expiry sweeper is
    the repository's: tests/contracts/booking_repository.py)."""
    h, store, clock, _, _, svc, owner, pet = world
    b = await confirmed(h, svc, owner, pet)
    target = SLOT + timedelta(hours=1)
    lapsed = await h.reservations.reserve(
        ReserveCommand(rid(), owner, "o@example.test", "Olga", svc.id, pet.id, target)
    )
    clock.now += timedelta(minutes=10)
    moved = await h.lifecycle.reschedule(rid(), b.id, owner, target)
    assert moved.start == target and store.reservations[b.lock_id].start == target
    assert store.reservations[lapsed.lock_id].state == ReservationState.EXPIRED


async def test_no_show_keeps_the_payment(world):
    h, store, clock, refunds, clinic, svc, owner, pet = world
    b = await confirmed(h, svc, owner, pet)
    clock.now = SLOT + timedelta(minutes=40)
    out = await h.lifecycle.record_outcome(rid(), b.id, clinic.id, BookingState.NO_SHOW)
    assert out.state == BookingState.NO_SHOW and out.refund_state == RefundState.NONE
    assert await h.refunds.dispatch() == 0 and refunds.calls == []
    assert store.outbox[-1].topic == TOPIC_BOOKING_NO_SHOW


async def test_refund_dispatcher_retries_a_failing_provider_until_accepted_and_refunds_once(world):
    h, store, clock, refunds, clinic, svc, owner, pet = world
    refunds.failures = 2
    b = await confirmed(h, svc, owner, pet)
    await h.lifecycle.cancel(rid(), b.id, Actor.CLINIC, "vet ill", clinic=clinic.id)
    assert await h.refunds.dispatch() == 1  # fails: back-off
    assert store.bookings[b.id].refund_state == RefundState.PENDING
    assert [x.id for x in await h.refunds.pending(10)] == [b.id]
    assert await h.refunds.dispatch() == 0  # not due yet
    for _ in range(2):
        clock.now += timedelta(seconds=31)
        await h.refunds.dispatch()
    assert store.bookings[b.id].refund_state == RefundState.SUCCEEDED
    assert refunds.made == {refund_request_id(b.id): 4500}
    assert {c[2] for c in refunds.calls} == {refund_request_id(b.id)}  # one request id for every attempt
    clock.now += timedelta(minutes=5)
    assert await h.refunds.dispatch() == 0 and await h.refunds.pending(10) == []


async def test_a_refund_accepted_then_failed_is_made_again_under_a_new_key_until_one_succeeds(world):
    h, store, clock, refunds, _clinic, svc, owner, pet = world
    refunds.status = "pending"
    b = await confirmed(h, svc, owner, pet)
    await h.lifecycle.cancel(rid(), b.id, Actor.OWNER, "", owner=owner)
    await h.refunds.dispatch()
    assert store.bookings[b.id].refund_state == RefundState.PROCESSING
    for rnd in (0, 1):  # the provider fails the accepted refund: twice in a row
        refunds.statuses[refund_request_id(b.id, rnd)] = "failed"
        clock.now += timedelta(seconds=3)
        await h.refunds.dispatch()  # the re-check finds it failed: shown, and still open
        failed = store.bookings[b.id]
        assert (failed.refund_state, failed.provider_refund_id) == (RefundState.FAILED, f"re_{rnd + 1}")
        assert failed.state == BookingState.CANCELLED
        assert [x.id for x in await h.refunds.pending(10)] == [b.id]
        assert await h.refunds.dispatch() == 0  # a short back-off first
        clock.now += timedelta(seconds=5)
        await h.refunds.dispatch()  # a new refund, under the next round's key
        assert store.bookings[b.id].refund_state == RefundState.PROCESSING
    refunds.statuses[refund_request_id(b.id, 2)] = "succeeded"
    clock.now += timedelta(seconds=3)
    await h.refunds.dispatch()
    done = store.bookings[b.id]
    assert (done.refund_state, done.provider_refund_id, done.refund_round) == (
        RefundState.SUCCEEDED,
        "re_3",
        2,
    )
    assert list(refunds.made) == [
        refund_request_id(b.id),
        f"booking-{b.id}-refund-1",
        f"booking-{b.id}-refund-2",
    ]
    assert [s for s in refunds.statuses.values() if s == "succeeded"] == ["succeeded"]  # one paid back
    clock.now += timedelta(minutes=5)
    assert await h.refunds.dispatch() == 0 and await h.refunds.pending(10) == []


async def test_an_accepted_refund_is_rechecked_until_the_provider_settles_it(world):
    h, store, clock, refunds, _clinic, svc, owner, pet = world
    refunds.status = "pending"
    b = await confirmed(h, svc, owner, pet)
    await h.lifecycle.cancel(rid(), b.id, Actor.OWNER, "", owner=owner)
    await h.refunds.dispatch()
    assert store.bookings[b.id].refund_state == RefundState.PROCESSING
    refunds.status = "succeeded"
    clock.now += timedelta(seconds=3)
    await h.refunds.dispatch()
    assert store.bookings[b.id].refund_state == RefundState.SUCCEEDED
    assert len(refunds.made) == 1
