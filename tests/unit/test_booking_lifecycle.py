"""The booking lifecycle rules (domain only, no I/O): the state machine, the cancellation policy's
refunds and cut-offs, and what the owner may still do."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from booking_svc.domain import (
    Actor,
    Booking,
    BookingNotConfirmed,
    BookingNotStarted,
    BookingStarted,
    BookingState,
    CancellationPolicy,
    RefundState,
    RescheduleCutoffPassed,
    SameSlot,
)
from petpro.errors import InvalidArgument

START = datetime(2030, 1, 7, 9, tzinfo=UTC)
POLICY = CancellationPolicy(full_refund_hours=48, late_refund_percent=25, reschedule_cutoff_hours=12)


def booking(policy: CancellationPolicy = POLICY, amount: int = 4550) -> Booking:
    return Booking(
        uuid.uuid4(),
        uuid.uuid4(),
        uuid.uuid4(),
        uuid.uuid4(),
        uuid.uuid4(),
        uuid.uuid4(),
        uuid.uuid4(),
        START,
        START + timedelta(minutes=30),
        BookingState.CONFIRMED,
        amount,
        "EUR",
        START - timedelta(days=10),
        policy=policy,
    )


@pytest.mark.parametrize(
    ("before", "refund"),
    [
        (timedelta(days=5), 4550),  # well before the window: everything
        (timedelta(hours=48), 4550),  # exactly N hours before: still in full
        (timedelta(hours=47, minutes=59), 1137),  # inside the window: 25 %, rounded down
        (timedelta(minutes=1), 1137),
        (timedelta(0), 0),  # at the start: nothing
        (-timedelta(hours=1), 0),
    ],
)
def test_policy_refund_by_time_before_start(before: timedelta, refund: int) -> None:
    assert POLICY.refund_minor(4550, START, START - before) == refund


def test_policy_rejects_impossible_values() -> None:
    with pytest.raises(ValueError):
        CancellationPolicy(late_refund_percent=101)
    with pytest.raises(ValueError):
        CancellationPolicy(full_refund_hours=-1)


def test_owner_cancel_in_window_refunds_the_policy_share_and_is_final() -> None:
    b = booking()
    now = START - timedelta(hours=10)
    assert b.cancel(Actor.OWNER, " changed plans ", now) == 1137
    assert (b.state, b.refund_minor, b.refund_state) == (BookingState.CANCELLED, 1137, RefundState.PENDING)
    assert (b.cancelled_by, b.cancel_reason, b.cancelled_at, b.version) == (
        Actor.OWNER,
        "changed plans",
        now,
        2,
    )
    with pytest.raises(BookingNotConfirmed):
        b.cancel(Actor.OWNER, "", now)
    with pytest.raises(BookingNotConfirmed):
        b.check_reschedule(START + timedelta(days=1), now)
    with pytest.raises(BookingNotConfirmed):
        b.record_outcome(BookingState.COMPLETED, START + timedelta(hours=1))


def test_policy_with_nothing_refunded_inside_window_owes_no_refund() -> None:
    b = booking(CancellationPolicy(full_refund_hours=24, late_refund_percent=0, reschedule_cutoff_hours=0))
    assert b.cancel(Actor.OWNER, "", START - timedelta(hours=1)) == 0
    assert b.refund_state == RefundState.NONE


def test_owner_cannot_cancel_after_start_but_clinic_can_with_full_refund_and_reason() -> None:
    after = START + timedelta(minutes=5)
    b = booking()
    with pytest.raises(BookingStarted):
        b.cancel(Actor.OWNER, "", after)
    assert b.state == BookingState.CONFIRMED  # nothing changed
    with pytest.raises(InvalidArgument) as exc:
        b.cancel(Actor.CLINIC, "  ", after)
    assert exc.value.violations[0].field == "reason"
    assert b.cancel(Actor.CLINIC, "vet ill", after) == 4550
    assert (b.cancelled_by, b.refund_state) == (Actor.CLINIC, RefundState.PENDING)


def test_a_later_policy_change_never_alters_the_booking_copy() -> None:
    b = booking()  # the copy taken at confirmation
    stricter = CancellationPolicy(full_refund_hours=720, late_refund_percent=0)
    assert stricter.refund_minor(4550, START, START - timedelta(days=5)) == 0
    assert b.refund_if_cancelled_now(START - timedelta(days=5)) == 4550


def test_reschedule_until_cutoff_keeps_state_and_counts() -> None:
    b = booking()
    new = START + timedelta(days=1)
    b.check_reschedule(new, START - timedelta(hours=12, seconds=1))
    with pytest.raises(RescheduleCutoffPassed) as exc:
        b.check_reschedule(new, START - timedelta(hours=12))
    assert exc.value.metadata["field"] == "slot_start_time"
    with pytest.raises(SameSlot):
        b.check_reschedule(START, START - timedelta(days=3))
    with pytest.raises(BookingStarted):
        b.check_reschedule(new, START)
    b.reschedule(new, new + timedelta(minutes=30), START - timedelta(days=1))
    assert (b.state, b.start, b.reschedule_count, b.version) == (BookingState.CONFIRMED, new, 1, 2)


@pytest.mark.parametrize("outcome", [BookingState.COMPLETED, BookingState.NO_SHOW])
def test_outcomes_only_after_start(outcome: BookingState) -> None:
    b = booking()
    with pytest.raises(BookingNotStarted):
        b.record_outcome(outcome, START - timedelta(seconds=1))
    b.record_outcome(outcome, START)
    assert b.state == outcome
    assert b.refund_state == RefundState.NONE  # a no-show keeps the payment
    with pytest.raises(BookingNotConfirmed):
        b.record_outcome(BookingState.COMPLETED, START + timedelta(hours=1))
    with pytest.raises(ValueError):
        booking().record_outcome(BookingState.CANCELLED, START)


def test_owner_view_what_may_still_be_done() -> None:
    b = booking()
    early, late, after = START - timedelta(days=3), START - timedelta(hours=6), START + timedelta(minutes=1)
    assert (b.can_cancel(early), b.refund_if_cancelled_now(early)) == (True, 4550)
    assert b.reschedule_deadline(early) == START - timedelta(hours=12)
    assert (b.can_cancel(late), b.refund_if_cancelled_now(late), b.reschedule_deadline(late)) == (
        True,
        1137,
        None,
    )
    assert (b.can_cancel(after), b.refund_if_cancelled_now(after), b.reschedule_deadline(after)) == (
        False,
        0,
        None,
    )
    b.cancel(Actor.OWNER, "", early)
    assert (b.can_cancel(early), b.refund_if_cancelled_now(early), b.reschedule_deadline(early)) == (
        False,
        0,
        None,
    )


def test_a_replayed_payment_webhook_after_cancel_confirms_the_same_booking_not_a_refund() -> None:
    from booking_svc.domain import ConfirmDecision, Reservation, ReservationState, decide_confirm

    payment = uuid.uuid4()
    res = Reservation(
        uuid.uuid4(),
        uuid.uuid4(),
        "a@example.com",
        "A",
        "r",
        "h",
        uuid.uuid4(),
        uuid.uuid4(),
        uuid.uuid4(),
        1,
        START,
        START + timedelta(minutes=30),
        ReservationState.CANCELLED,
        START - timedelta(days=9),
        4550,
        "EUR",
        payment_id=payment,
        booking_id=uuid.uuid4(),
    )
    assert decide_confirm(res, payment, START - timedelta(days=1)) == ConfirmDecision.ALREADY_CONFIRMED
