"""`petpro admin create-clinic --hours …` parsing (the CLI's own input; the API validates the rest)."""

from __future__ import annotations

import pytest

from petpro_dev.admin import AdminFailed, parse_hours


def test_day_ranges_and_several_intervals():
    hours = parse_hours(["mon-wed=08:00-12:00,13:00-18:00", "sat=09:00-13:00"])
    assert [(h["weekday"], h["open_time"], h["close_time"]) for h in hours] == [
        ("WEEKDAY_MONDAY", "08:00", "12:00"),
        ("WEEKDAY_MONDAY", "13:00", "18:00"),
        ("WEEKDAY_TUESDAY", "08:00", "12:00"),
        ("WEEKDAY_TUESDAY", "13:00", "18:00"),
        ("WEEKDAY_WEDNESDAY", "08:00", "12:00"),
        ("WEEKDAY_WEDNESDAY", "13:00", "18:00"),
        ("WEEKDAY_SATURDAY", "09:00", "13:00"),
    ]


@pytest.mark.parametrize("spec", ["monday=08:00-12:00", "mon=8-12", "xyz-fri=08:00-12:00", "mon=08:00"])
def test_bad_specs_say_how_to_write_them(spec):
    with pytest.raises(AdminFailed) as exc:
        parse_hours([spec])
    assert spec in str(exc.value)
