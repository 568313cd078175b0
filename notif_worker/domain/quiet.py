"""Quiet hours: a clinic's nightly window (its local time) in which no reminder goes out.  A reminder
due inside it is sent at its end, and never after the visit has started (then it is not sent at all).
Confirmations and cancellations are not reminders: they go at once."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

from petpro.errors import InvalidArgument

_HHMM = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")


def parse_hhmm(text: str) -> time:
    m = _HHMM.match(text)
    if m is None:
        raise InvalidArgument(f"not a time of day (HH:MM): {text!r}")
    return time(int(m.group(1)), int(m.group(2)))


@dataclass(frozen=True)
class QuietHours:
    """From ``start`` until ``end`` local time, over midnight when ``end`` < ``start``; equal: none."""

    start: time = time(21, 0)
    end: time = time(8, 0)

    @classmethod
    def parse(cls, start: str, end: str) -> QuietHours:
        return cls(parse_hhmm(start), parse_hhmm(end))

    def __str__(self) -> str:
        return f"{self.start:%H:%M}-{self.end:%H:%M}"

    def contains(self, t: time) -> bool:
        if self.start == self.end:
            return False
        if self.start < self.end:
            return self.start <= t < self.end
        return t >= self.start or t < self.end

    def end_after(self, moment: datetime, zone: str) -> datetime | None:
        """When the quiet hours around ``moment`` end (an aware datetime, in the zone), or None when
        ``moment`` is outside them.  Across a DST change the end is the wall-clock end of that night
        (a nonexistent wall time is taken forward by the gap)."""
        tz = ZoneInfo(zone)
        here = moment.astimezone(tz)
        if not self.contains(here.timetz().replace(tzinfo=None)):
            return None
        day = here.date()
        if self.start > self.end and here.time() >= self.start:
            day += timedelta(days=1)  # after the evening start: the window ends tomorrow morning
        # a wall time that does not exist (spring forward) is taken forward by the gap; an ambiguous
        # one (fall back) is its first occurrence
        return datetime.combine(day, self.end, tzinfo=tz).astimezone(UTC).astimezone(tz)


DEFAULT_QUIET_HOURS = QuietHours()


def reminder_send_time(now: datetime, visit_start: datetime, zone: str, quiet: QuietHours) -> datetime | None:
    """When a reminder that is due ``now`` may go out: ``now`` outside the quiet hours, their end inside
    them, and None when that end is not before the visit's start (never after the visit has begun)."""
    end = quiet.end_after(now, zone)
    if end is None:
        return now
    return end if end < visit_start else None
