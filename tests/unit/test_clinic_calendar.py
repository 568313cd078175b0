"""Clinic calendar rules: opening intervals, closures, day overrides, DST days, species, notice and
horizon, buffers, etags (pure domain, no I/O)."""

from __future__ import annotations

import itertools
import uuid
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from booking_svc.domain import (
    Clinic,
    Closure,
    EtagMismatch,
    Interval,
    Service,
    SpeciesNotAllowed,
    check_etag,
    check_intervals,
    check_slot,
    check_time_zone,
    outside_schedule,
    parse_hhmm,
    slot_grid,
)
from booking_svc.handlers import WeeklyHours, check_mask
from petpro.errors import InvalidArgument

BERLIN = ZoneInfo("Europe/Berlin")
NOW = datetime(2030, 1, 1, tzinfo=UTC)


def clinic(hours: dict[str, list[tuple[str, str]]], tz: str = "Europe/Berlin", **kw) -> Clinic:
    return Clinic(
        uuid.uuid4(),
        "Vet",
        tz,
        {d: [Interval(parse_hhmm(a), parse_hhmm(b)) for a, b in ivs] for d, ivs in hours.items()},
        **kw,
    )


def service(c: Clinic, minutes: int = 30, **kw) -> Service:
    return Service(uuid.uuid4(), c.id, "Check-up", minutes, 4500, "EUR", **kw)


def local(slots, zone=BERLIN) -> list[str]:
    return [s.start.astimezone(zone).strftime("%H:%M%z") for s in slots]


# -- daylight saving time --------------------------------------------------------------------------
SPRING = date(2030, 3, 31)  # Sunday: Berlin jumps from 02:00 CET to 03:00 CEST
AUTUMN = date(2030, 10, 27)  # Sunday: Berlin falls back from 03:00 CEST to 02:00 CET


def test_spring_forward_day_has_no_slot_in_the_missing_hour():
    c = clinic({"sun": [("01:00", "05:00")]})
    grid = slot_grid(c, service(c, 60), SPRING)
    # 01:00-05:00 local is three real hours that day: 01:00 CET, 03:00 CEST, 04:00 CEST; no 02:00
    assert local(grid) == ["01:00+0100", "03:00+0200", "04:00+0200"]
    assert all(s.end - s.start == timedelta(hours=1) for s in grid)
    assert len({s.start for s in grid}) == len(grid)


def test_opening_inside_the_missing_hour_starts_after_the_gap():
    c = clinic({"sun": [("02:30", "04:00")]})
    assert local(slot_grid(c, service(c, 30), SPRING)) == ["03:30+0200"]


def test_fall_back_day_offers_the_repeated_hour_once_per_real_instant():
    c = clinic({"sun": [("01:00", "04:00")]})
    grid = slot_grid(c, service(c, 60), AUTUMN)
    # 01:00-04:00 local is four real hours: 01:00 CEST, 02:00 CEST, 02:00 CET, 03:00 CET
    assert local(grid) == ["01:00+0200", "02:00+0200", "02:00+0100", "03:00+0100"]
    starts = [s.start for s in grid]
    assert len(set(starts)) == len(starts) and starts == sorted(starts)
    assert all(b.start - a.start == timedelta(hours=1) for a, b in itertools.pairwise(grid))


def test_a_slot_on_a_dst_day_can_be_booked_by_its_real_instant():
    c = clinic({"sun": [("01:00", "04:00")]})
    svc = service(c, 60)
    second_two_oclock = slot_grid(c, svc, AUTUMN)[2]
    assert check_slot(c, svc, second_two_oclock.start, datetime(2030, 10, 1, tzinfo=UTC)) == second_two_oclock


def test_new_york_dst_is_honoured_too():
    c = clinic({"sun": [("01:00", "04:00")]}, tz="America/New_York")
    grid = slot_grid(c, service(c, 60), date(2030, 3, 10))  # US spring forward at 02:00
    assert local(grid, ZoneInfo("America/New_York")) == ["01:00-0500", "03:00-0400"]


# -- closures and overrides ------------------------------------------------------------------------
MONDAY = date(2030, 1, 7)


def test_closure_closes_every_day_of_its_range_inclusive():
    c = clinic({d: [("08:00", "12:00")] for d in ("mon", "tue", "wed")})
    c.closures = [Closure(uuid.uuid4(), c.id, MONDAY, MONDAY + timedelta(days=1), "Training")]
    svc = service(c)
    assert slot_grid(c, svc, MONDAY) == []
    assert slot_grid(c, svc, MONDAY + timedelta(days=1)) == []
    assert len(slot_grid(c, svc, MONDAY + timedelta(days=2))) == 8


def test_day_override_replaces_the_weekday_and_a_closure_beats_it():
    c = clinic({"mon": [("08:00", "12:00")]})
    c.overrides = {MONDAY: [Interval(time(14), time(15))]}
    svc = service(c)
    assert local(slot_grid(c, svc, MONDAY)) == ["14:00+0100", "14:30+0100"]
    c.overrides[MONDAY] = []  # closed that day
    assert slot_grid(c, svc, MONDAY) == []
    c.overrides = {MONDAY: [Interval(time(14), time(15))]}
    c.closures = [Closure(uuid.uuid4(), c.id, MONDAY, MONDAY)]
    assert slot_grid(c, svc, MONDAY) == []


def test_bookings_outside_a_changed_schedule_are_found():
    c = clinic({"mon": [("08:00", "12:00")]})
    start = datetime(2030, 1, 7, 9, 0, tzinfo=BERLIN).astimezone(UTC)
    assert not outside_schedule(c, start, start + timedelta(minutes=30))
    c.closures = [Closure(uuid.uuid4(), c.id, MONDAY, MONDAY)]
    assert outside_schedule(c, start, start + timedelta(minutes=30))
    c.closures = []
    c.overrides = {MONDAY: [Interval(time(8), time(9, 15))]}
    assert outside_schedule(c, start, start + timedelta(minutes=30))  # ends after the shortened day


def test_several_intervals_per_day_and_24_00():
    c = clinic({"mon": [("08:00", "09:00"), ("22:00", "24:00")]})
    assert local(slot_grid(c, service(c, 60), MONDAY)) == ["08:00+0100", "22:00+0100", "23:00+0100"]


# -- interval and time zone validation ---------------------------------------------------------------
def iv(a: str, b: str) -> Interval:
    return Interval(parse_hhmm(a), parse_hhmm(b))


def test_interval_ending_before_it_starts_names_the_close_time():
    v = check_intervals([("opening_hours[0]", iv("12:00", "08:00"))])
    assert [(x.field, x.reason) for x in v] == [("opening_hours[0].close_time", "INTERVAL_END_BEFORE_START")]


def test_overlapping_intervals_are_named_even_when_not_adjacent():
    v = check_intervals(
        [("h[0]", iv("08:00", "18:00")), ("h[1]", iv("09:00", "10:00")), ("h[2]", iv("11:00", "12:00"))]
    )
    assert sorted(x.field for x in v) == ["h[1]", "h[2]"]
    assert {x.reason for x in v} == {"INTERVALS_OVERLAP"}
    assert check_intervals([("h[0]", iv("08:00", "12:00")), ("h[1]", iv("12:00", "13:00"))]) == []


def test_weekly_hours_check_per_weekday():
    hours = WeeklyHours(
        (
            ("opening_hours[0]", "mon", iv("08:00", "12:00")),
            ("opening_hours[1]", "tue", iv("08:00", "12:00")),
            ("opening_hours[2]", "mon", iv("11:00", "13:00")),
        )
    )
    with pytest.raises(InvalidArgument) as exc:
        hours.check()
    assert [v.field for v in exc.value.violations] == ["opening_hours[2]"]


@pytest.mark.parametrize("name", ["Mars/Olympus", "", "../etc/passwd", "Europe/Berlinn"])
def test_unknown_time_zone_names_the_field(name):
    with pytest.raises(InvalidArgument) as exc:
        check_time_zone(name)
    assert [(v.field, v.reason) for v in exc.value.violations] == [("clinic.time_zone", "TIME_ZONE_UNKNOWN")]


def test_known_time_zone_passes():
    assert check_time_zone("Asia/Kolkata").key == "Asia/Kolkata"


# -- service rules -----------------------------------------------------------------------------------
def test_species_restriction_names_what_is_allowed():
    c = clinic({"mon": [("08:00", "12:00")]})
    cats_only = service(c, species_allowed=("CAT",))
    cats_only.check_species("CAT")
    with pytest.raises(SpeciesNotAllowed) as exc:
        cats_only.check_species("DOG")
    assert exc.value.reason == "SPECIES_NOT_ALLOWED" and "cat" in exc.value.message
    service(c).check_species("DOG")  # no restriction


def test_minimum_notice_and_horizon():
    c = clinic({"mon": [("08:00", "12:00")]})
    svc = service(c, min_notice_minutes=24 * 60, max_horizon_days=30)
    slot = datetime(2030, 1, 7, 9, 0, tzinfo=BERLIN)
    with pytest.raises(InvalidArgument) as exc:
        check_slot(c, svc, slot, slot - timedelta(hours=2))
    assert exc.value.violations[0].reason == "SLOT_TOO_SOON"
    with pytest.raises(InvalidArgument) as exc:
        check_slot(c, svc, slot, slot - timedelta(days=31))
    assert exc.value.violations[0].reason == "SLOT_TOO_FAR"
    assert check_slot(c, svc, slot, slot - timedelta(days=2)).start == slot.astimezone(UTC)


def test_buffer_after_spaces_the_grid():
    c = clinic({"mon": [("08:00", "10:00")]})
    assert local(slot_grid(c, service(c, 30, buffer_after_minutes=15), MONDAY)) == [
        "08:00+0100",
        "08:45+0100",
        "09:30+0100",
    ]


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"capacity": 0}, "service.capacity"),
        ({"price_minor": -100}, "service.price.amount_minor"),
        ({"price_minor": 0}, "service.price.amount_minor"),
        ({"currency": "eur"}, "service.price.currency"),
        ({"name": "  "}, "service.name"),
    ],
)
def test_service_rules_name_the_field(change, field):
    c = clinic({})
    svc = service(c)
    for k, v in change.items():
        setattr(svc, k, v)
    with pytest.raises(InvalidArgument) as exc:
        svc.check_rules()
    assert [v.field for v in exc.value.violations] == [field]


def test_stale_etag_is_a_conflict_and_no_etag_is_unconditional():
    check_etag("s3", "s3")
    check_etag("s3", "")
    with pytest.raises(EtagMismatch) as exc:
        check_etag("s4", "s3")
    assert exc.value.kind.value == "ABORTED"


def test_update_mask_accepts_only_updatable_fields():
    assert check_mask(["name", "capacity"], ("name", "capacity")) == ["name", "capacity"]
    for bad in (["clinic_id"], []):
        with pytest.raises(InvalidArgument) as exc:
            check_mask(bad, ("name", "capacity"))
        assert exc.value.violations[0].field == "update_mask"


def test_proto_violations_name_the_list_index():
    import protovalidate

    from petpro.interceptors import violations_of
    from petpro_api.booking.v1 import clinic_admin_pb2

    req = clinic_admin_pb2.SetOpeningHoursRequest(clinic_id=str(uuid.uuid4()))
    req.opening_hours.add(weekday=1, open_time="08:00", close_time="12:00")
    req.opening_hours.add(weekday=1, open_time="8am", close_time="12:00")
    assert [v.field for v in violations_of(req, protovalidate.Validator())] == ["opening_hours[1].open_time"]
