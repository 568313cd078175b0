"""The catalog: clinics with their opening hours, closures and day overrides, services, and the slot
grid they make.  Times are timezone-aware; a clinic's hours are in its own zone."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from booking_svc.domain.errors import EtagMismatch, SpeciesNotAllowed
from booking_svc.domain.policy import DEFAULT_POLICY, CancellationPolicy
from petpro.errors import FieldViolation, InvalidArgument
from petpro.locale import canonical_locale

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")  # index = date.weekday()
MAX_BOOKING_HORIZON = timedelta(days=180)


def bad_slot(description: str, reason: str) -> InvalidArgument:
    return InvalidArgument.field("slot_start_time", description, reason)


@dataclass(frozen=True)
class Interval:
    start: time
    end: time  # time(0, 0) as an end means midnight at the end of the day ("24:00")

    @property
    def end_minutes(self) -> int:
        return 24 * 60 if self.end == time(0, 0) else self.end.hour * 60 + self.end.minute

    @property
    def start_minutes(self) -> int:
        return self.start.hour * 60 + self.start.minute


def parse_hhmm(value: str) -> time:
    """ "HH:MM" (24 h; "24:00" is midnight at the end of the day, stored as 00:00)."""
    return time(0, 0) if value == "24:00" else time.fromisoformat(value)


def format_end(t: time) -> str:
    return "24:00" if t == time(0, 0) else t.strftime("%H:%M")


def check_intervals(intervals: list[tuple[str, Interval]]) -> list[FieldViolation]:
    """Violations of one day's intervals (field path, interval): end not after start, overlaps."""
    out: list[FieldViolation] = []
    valid: list[tuple[str, Interval]] = []
    for path, iv in intervals:
        if iv.end_minutes <= iv.start_minutes:
            out.append(
                FieldViolation(f"{path}.close_time", "must be after open_time", "INTERVAL_END_BEFORE_START")
            )
        else:
            valid.append((path, iv))
    valid.sort(key=lambda p: p[1].start_minutes)
    reach = -1  # the latest end so far
    for path, iv in valid:
        if iv.start_minutes < reach:
            out.append(FieldViolation(path, "overlaps another interval of the same day", "INTERVALS_OVERLAP"))
        reach = max(reach, iv.end_minutes)
    return out


def check_locale(tag: str, field_path: str = "clinic.locale") -> str:
    """The clinic's locale in canonical case ("de-de" → "de-DE"); "" clears it."""
    if not tag.strip():
        return ""
    found = canonical_locale(tag)
    if found is None:
        raise InvalidArgument.field(
            field_path, "must be a BCP 47 language tag of at most 35 characters, e.g. de-DE", "LOCALE_INVALID"
        )
    return found


def check_time_zone(name: str, field_path: str = "clinic.time_zone") -> ZoneInfo:
    try:
        if not name or name.startswith(("/", ".")):
            raise ValueError(name)
        return ZoneInfo(name)
    except (ValueError, ZoneInfoNotFoundError):
        raise InvalidArgument.field(
            field_path, "is not a known IANA time zone", "TIME_ZONE_UNKNOWN"
        ) from None


@dataclass(frozen=True)
class Closure:
    id: uuid.UUID
    clinic_id: uuid.UUID
    start_date: date
    end_date: date
    reason: str = ""

    def covers(self, day: date) -> bool:
        return self.start_date <= day <= self.end_date


@dataclass
class Clinic:
    id: uuid.UUID
    name: str
    time_zone: str
    opening_hours: dict[str, list[Interval]]  # "mon" → intervals, local time
    address: str = ""
    phone: str = ""
    email: str = ""
    version: int = 1
    closures: list[Closure] = field(default_factory=list)  # the ones that have not ended
    overrides: dict[date, list[Interval]] = field(
        default_factory=dict
    )  # a day's hours instead of its weekday's
    # when the owner is reminded, in minutes before the start (default 48 h and 2 h)
    reminder_offsets_minutes: tuple[int, ...] = (2880, 120)
    locale: str = ""  # BCP 47 in canonical case ("de-DE"); "" = unknown (notifications fall back to English)

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.time_zone)

    @property
    def etag(self) -> str:
        return f"c{self.version}"

    def intervals_on(self, day: date) -> list[Interval]:
        """Opening intervals of a local day: closed on a closure, else the day's override, else its weekday's."""
        if any(c.covers(day) for c in self.closures):
            return []
        if day in self.overrides:
            return self.overrides[day]
        return self.opening_hours.get(WEEKDAYS[day.weekday()], [])


def check_etag(current: str, given: str) -> None:
    if given and given != current:
        raise EtagMismatch(
            "the resource was changed by someone else; read it again and retry", metadata={"etag": current}
        )


@dataclass(frozen=True)
class ServiceNeed:
    """``quantity`` items of ``resource_type`` per appointment."""

    resource_type: str
    quantity: int = 1


@dataclass
class Service:
    id: uuid.UUID
    clinic_id: uuid.UUID
    name: str
    duration_minutes: int
    price_minor: int
    currency: str
    capacity: int = 1
    description: str = ""
    species_allowed: tuple[str, ...] = ()  # empty: every species
    buffer_after_minutes: int = 0
    min_notice_minutes: int = 0
    max_horizon_days: int = MAX_BOOKING_HORIZON.days
    active: bool = True
    archived: bool = False
    version: int = 1
    policy: CancellationPolicy = DEFAULT_POLICY  # what its new bookings copy
    # who can perform it (empty: no provider needed) and the resources it needs (ServiceNeed); with
    # neither, ``capacity`` anonymous units (docs/design/scheduling.md)
    provider_ids: tuple[uuid.UUID, ...] = ()
    needs: tuple[ServiceNeed, ...] = ()

    @property
    def duration(self) -> timedelta:
        return timedelta(minutes=self.duration_minutes)

    @property
    def step(self) -> timedelta:
        return timedelta(minutes=self.duration_minutes + self.buffer_after_minutes)

    @property
    def etag(self) -> str:
        return f"s{self.version}"

    @property
    def bookable(self) -> bool:
        return self.active and not self.archived

    def check_species(self, species: str) -> None:
        if self.species_allowed and species not in self.species_allowed:
            allowed = ", ".join(s.lower() for s in self.species_allowed)
            raise SpeciesNotAllowed(
                f"this service is for {allowed} only, not {species.lower()}",
                metadata={"species": species, "allowed": allowed},
            )

    def check_rules(self) -> None:
        """Whole-resource rules after a create or an update (the proto checks each field's range)."""
        violations = []
        if not self.name.strip():
            violations.append(FieldViolation("service.name", "is required", "REQUIRED"))
        if self.duration_minutes < 5:
            violations.append(
                FieldViolation("service.duration_minutes", "must be at least 5", "DURATION_TOO_SHORT")
            )
        if self.capacity < 1:
            violations.append(FieldViolation("service.capacity", "must be at least 1", "CAPACITY_TOO_SMALL"))
        if self.price_minor <= 0:
            violations.append(
                FieldViolation("service.price.amount_minor", "must be positive", "PRICE_NOT_POSITIVE")
            )
        if len(self.currency) != 3 or not self.currency.isalpha() or not self.currency.isupper():
            violations.append(
                FieldViolation("service.price.currency", "must be an ISO 4217 code", "CURRENCY_INVALID")
            )
        if violations:
            raise InvalidArgument(
                "; ".join(f"{v.field}: {v.description}" for v in violations), violations=violations
            )


@dataclass(frozen=True)
class GridSlot:
    start: datetime  # UTC
    end: datetime


def _local_instant(day: date, minutes: int, zone: ZoneInfo) -> datetime:
    """The UTC instant of a wall-clock time on a local day.  A time that does not exist (skipped by a
    DST change) resolves to the same distance past the gap's start (02:30 → 03:30 in Berlin in March); a
    time that happens twice to its first occurrence."""
    base = datetime.combine(day, time(0, 0))
    local = (base + timedelta(minutes=minutes)).replace(tzinfo=zone, fold=0)
    return local.astimezone(UTC)


def slot_grid(clinic: Clinic, service: Service, day: date) -> list[GridSlot]:
    """The bookable slots of ``service`` on local date ``day``: from each opening, stepping by
    duration + buffer, each fully inside its opening interval.  Computed in real (UTC) time, so a
    day with a DST change has neither a slot that does not exist nor one twice."""
    zone = clinic.zone
    out: list[GridSlot] = []
    for iv in clinic.intervals_on(day):
        start = _local_instant(day, iv.start_minutes, zone)
        close = _local_instant(day, iv.end_minutes, zone)
        while start + service.duration <= close:
            out.append(GridSlot(start, start + service.duration))
            start += service.step
    return out


def bookable_window(service: Service, now: datetime) -> tuple[datetime, datetime]:
    """Slots may start in [now + minimum notice, now + horizon]."""
    return now + timedelta(minutes=service.min_notice_minutes), now + timedelta(days=service.max_horizon_days)


def check_slot(clinic: Clinic, service: Service, start: datetime, now: datetime) -> GridSlot:
    """The grid slot starting at ``start``, or an INVALID_ARGUMENT naming why it isn't bookable.

    Arithmetic on the opening interval that contains ``start`` (the same real-time grid as
    ``slot_grid``): no day's grid is built on the reserve path."""
    if start.tzinfo is None:
        raise bad_slot("must carry a time zone", "SLOT_NAIVE")
    if start <= now:
        raise bad_slot("must be in the future", "SLOT_IN_PAST")
    earliest, latest = bookable_window(service, now)
    if start > latest:
        raise bad_slot(f"must be within {service.max_horizon_days} days", "SLOT_TOO_FAR")
    if start < earliest:
        raise bad_slot(f"must be at least {service.min_notice_minutes} minutes ahead", "SLOT_TOO_SOON")
    zone = clinic.zone
    day = start.astimezone(zone).date()
    at = start.astimezone(UTC)
    duration, step = service.duration, service.step
    for iv in clinic.intervals_on(day):
        opening = _local_instant(day, iv.start_minutes, zone)
        close = _local_instant(day, iv.end_minutes, zone)
        if step <= timedelta(0) or at < opening or close - opening < duration:
            continue
        # slot k runs [opening + k·step, opening + k·step + duration) while it ends by ``close``: one
        # division finds the only slot that can hold ``start``
        k = (at - opening) // step
        slot = GridSlot(opening + k * step, opening + k * step + duration)
        if slot.end > close or at >= slot.end:
            continue  # past the last slot, or in the buffer after one
        if slot.start != at:
            raise _off_grid(service)
        return slot
    raise bad_slot("is outside the clinic's opening hours", "SLOT_OUTSIDE_HOURS")


def _off_grid(service: Service) -> InvalidArgument:
    return bad_slot(f"is not on the service's {service.duration_minutes}-minute grid", "SLOT_OFF_GRID")


def outside_schedule(clinic: Clinic, start: datetime, end: datetime) -> bool:
    """Whether [start, end) no longer lies inside one opening interval of its local day (after a
    change of hours, a closure or an override)."""
    zone = clinic.zone
    day = start.astimezone(zone).date()
    for iv in clinic.intervals_on(day):
        if _local_instant(day, iv.start_minutes, zone) <= start and end <= _local_instant(
            day, iv.end_minutes, zone
        ):
            return False
    return True
