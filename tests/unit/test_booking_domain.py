"""Slot grid and confirmation rules of the booking domain (pure Python, no I/O)."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, time, timedelta

import pytest

from booking_svc.domain import (
    Clinic,
    ConfirmDecision,
    Interval,
    Reservation,
    ReservationClosed,
    ReservationState,
    Service,
    SlotLost,
    check_slot,
    decide_confirm,
    slot_grid,
)
from petpro.errors import InvalidArgument

BERLIN = "Europe/Berlin"
CLINIC = Clinic(
    uuid.uuid4(), "Vet", BERLIN, {"mon": [Interval(time(8), time(12)), Interval(time(13), time(14))]}
)
SERVICE = Service(uuid.uuid4(), CLINIC.id, "Check-up", 45, 4500, "EUR")
MONDAY = date(2030, 1, 7)  # a Monday, CET (UTC+1)
NOW = datetime(2030, 1, 1, tzinfo=UTC)


def test_grid_fits_slots_inside_each_opening_interval_in_clinic_time():
    grid = slot_grid(CLINIC, SERVICE, MONDAY)
    # 08:00..12:00 holds five 45-min slots (the sixth would end 12:30); 13:00..14:00 holds one
    assert len(grid) == 6
    assert grid[0].start == datetime(2030, 1, 7, 7, 0, tzinfo=UTC)
    assert grid[4].end == datetime(2030, 1, 7, 10, 45, tzinfo=UTC)  # 11:45 local
    assert grid[5].start == datetime(2030, 1, 7, 12, 0, tzinfo=UTC)


def test_closed_day_has_no_slots():
    assert slot_grid(CLINIC, SERVICE, MONDAY + timedelta(days=1)) == []


@pytest.mark.parametrize(
    ("start", "reason"),
    [
        (datetime(2029, 12, 31, 9, tzinfo=UTC), "SLOT_IN_PAST"),
        (datetime(2030, 1, 7, 6, 0, tzinfo=UTC), "SLOT_OUTSIDE_HOURS"),  # 07:00 local, before opening
        (datetime(2030, 1, 7, 11, 50, tzinfo=UTC), "SLOT_OUTSIDE_HOURS"),  # lunch break
        (datetime(2030, 1, 7, 7, 10, tzinfo=UTC), "SLOT_OFF_GRID"),
        (datetime(2031, 1, 6, 7, 0, tzinfo=UTC), "SLOT_TOO_FAR"),
    ],
)
def test_unbookable_slots_name_the_field_and_reason(start, reason):
    with pytest.raises(InvalidArgument) as exc:
        check_slot(CLINIC, SERVICE, start, NOW)
    assert exc.value.violations[0].field == "slot_start_time"
    assert exc.value.violations[0].reason == reason


def test_grid_slot_is_accepted_and_returned():
    slot = check_slot(CLINIC, SERVICE, datetime(2030, 1, 7, 7, 45, tzinfo=UTC), NOW)
    assert slot.end - slot.start == timedelta(minutes=45)


def _grid_answer(clinic: Clinic, service: Service, start: datetime, grids: dict[date, list]) -> object:
    """What the day's grid says about ``start``: the slot, or the reason it is not bookable."""
    day = start.astimezone(clinic.zone).date()
    if day not in grids:
        grids[day] = slot_grid(clinic, service, day)
    slots = grids[day]
    if not any(s.start <= start < s.end for s in slots):
        return "SLOT_OUTSIDE_HOURS"
    return next((s for s in slots if s.start == start), "SLOT_OFF_GRID")


@pytest.mark.parametrize("day", [MONDAY, date(2030, 3, 31), date(2030, 10, 27)])  # plain, DST start, DST end
def test_check_slot_agrees_with_the_days_grid_minute_by_minute(day):
    """check_slot works out the one slot arithmetically; it must answer exactly as the whole grid
    would, for every minute of the day, across daylight-saving shifts, odd durations and buffers."""
    hours = [Interval(time(0, 30), time(3, 40)), Interval(time(8), time(12)), Interval(time(13), time(14))]
    clinic = Clinic(uuid.uuid4(), "Vet", BERLIN, {d: hours for d in ("mon", "sun")})
    now = datetime.combine(day, time(0), UTC) - timedelta(days=1)
    for minutes, buffer in ((5, 0), (45, 0), (50, 0), (30, 15)):  # (30, 15): a buffer after each slot
        service = Service(uuid.uuid4(), clinic.id, "S", minutes, 100, "EUR", buffer_after_minutes=buffer)
        t = datetime.combine(day, time(0), UTC) - timedelta(hours=3)
        grids: dict[date, list] = {}
        while t < datetime.combine(day, time(0), UTC) + timedelta(hours=27):
            want = _grid_answer(clinic, service, t, grids)
            try:
                got: object = check_slot(clinic, service, t, now)
            except InvalidArgument as exc:
                got = exc.violations[0].reason
            assert got == want, (minutes, t)
            t += timedelta(minutes=1)


def _res(state=ReservationState.HELD, expires=NOW + timedelta(minutes=10), payment=None, failure=None):
    return Reservation(
        uuid.uuid4(),
        uuid.uuid4(),
        "o@x.co",
        "O",
        "r",
        "h",
        SERVICE.id,
        CLINIC.id,
        uuid.uuid4(),
        1,
        NOW,
        NOW + timedelta(minutes=45),
        state,
        expires,
        4500,
        "EUR",
        payment,
        failure,
    )


def test_live_hold_confirms_and_expired_hold_must_reclaim():
    pay = uuid.uuid4()
    assert decide_confirm(_res(), pay, NOW) == ConfirmDecision.CONFIRM_HELD
    assert decide_confirm(_res(expires=NOW), pay, NOW) == ConfirmDecision.RECLAIM
    assert decide_confirm(_res(ReservationState.EXPIRED), pay, NOW) == ConfirmDecision.RECLAIM


def test_confirm_is_idempotent_per_payment_only():
    pay = uuid.uuid4()
    confirmed = _res(ReservationState.CONFIRMED, payment=pay)
    assert decide_confirm(confirmed, pay, NOW) == ConfirmDecision.ALREADY_CONFIRMED
    with pytest.raises(ReservationClosed):
        decide_confirm(confirmed, uuid.uuid4(), NOW)


def test_lost_slot_and_cancelled_reservations_never_confirm():
    with pytest.raises(SlotLost):
        decide_confirm(_res(ReservationState.FAILED, failure="SLOT_TAKEN"), uuid.uuid4(), NOW)
    with pytest.raises(ReservationClosed):
        decide_confirm(_res(ReservationState.CANCELLED), uuid.uuid4(), NOW)


def test_late_payment_reclaims_a_free_slot_and_fails_a_taken_one():
    from booking_svc.domain import FAILURE_SLOT_TAKEN, decide_reclaim

    kept = decide_reclaim(slot_still_free=True)
    assert (kept.state, kept.failure_reason, kept.lost) == (ReservationState.CONFIRMED, None, False)
    lost = decide_reclaim(slot_still_free=False)
    assert (lost.state, lost.failure_reason, lost.lost) == (ReservationState.FAILED, FAILURE_SLOT_TAKEN, True)
    # and a reservation failed that way answers every later confirmation with "refund it"
    with pytest.raises(SlotLost):
        decide_confirm(_res(lost.state, failure=lost.failure_reason), uuid.uuid4(), NOW)


def test_a_confirmed_booking_copies_the_reservation():
    from booking_svc.domain import Booking, BookingState

    res, pay = _res(), uuid.uuid4()
    b = Booking.confirm(res, pay, NOW)
    assert b.state is BookingState.CONFIRMED
    assert (
        b.lock_id,
        b.payment_id,
        b.owner_user_id,
        b.pet_id,
        b.start,
        b.end,
        b.amount_minor,
        b.currency,
    ) == (res.lock_id, pay, res.owner_user_id, res.pet_id, res.start, res.end, res.amount_minor, res.currency)
    assert b.created_at == NOW and b.id != res.lock_id
