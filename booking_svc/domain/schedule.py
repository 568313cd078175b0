"""Scheduling by providers, resources and pets (docs/design/scheduling.md): who and what a service needs,
when a provider works, which claims a hold makes, the "any available" rule, and availability (day and
month views) computed from the same rules the hold is checked against.  Pure: the claims come in as
data; the database's exclusion constraints are the last word on races."""

from __future__ import annotations

import hashlib
import uuid
from bisect import bisect_left
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from enum import StrEnum

from booking_svc.domain.catalog import (
    WEEKDAYS,
    Clinic,
    GridSlot,
    Interval,
    Service,
    _local_instant,
    bookable_window,
    check_intervals,
    slot_grid,
)
from booking_svc.domain.errors import (
    PetBusy,
    ProviderTaken,
    ProviderUnavailable,
    ResourceTaken,
    SlotUnavailable,
)
from petpro.errors import FieldViolation, InvalidArgument


class ClaimKind(StrEnum):
    UNIT = "unit"  # one of a capacity-only service's anonymous places (subject = the service)
    PROVIDER = "provider"
    RESOURCE = "resource"
    PET = "pet"


class Assignment(StrEnum):
    """How a reservation's provider was chosen (``petpro.booking.v1.AssignmentRule``)."""

    CHOSEN = "CHOSEN"
    ANY_FEWEST_THAT_DAY = "ANY_FEWEST_THAT_DAY"


@dataclass(frozen=True)
class TimeOff:
    id: uuid.UUID
    provider_id: uuid.UUID
    start: datetime
    end: datetime
    reason: str = ""


@dataclass
class Provider:
    id: uuid.UUID
    clinic_id: uuid.UUID
    display_name: str
    weekly_hours: dict[str, list[Interval]] = field(default_factory=dict)  # "mon" → intervals, local
    user_id: uuid.UUID | None = None
    seq: int = 0  # the reservation's unit of a service with providers; assigned by the repository
    time_off: list[TimeOff] = field(default_factory=list)  # the ones that have not ended, by start
    archived: bool = False
    version: int = 1

    @property
    def etag(self) -> str:
        return f"p{self.version}"

    @property
    def name(self) -> str:
        return f"clinics/{self.clinic_id}/providers/{self.id}"

    def spans_on(self, clinic: Clinic, day: date) -> list[tuple[datetime, datetime]]:
        """The provider's working intervals of a local day as instants (none on a day the clinic is
        closed: a closure, or an override closing it)."""
        if self.archived or not clinic.intervals_on(day):
            return []
        zone = clinic.zone
        return [
            (_local_instant(day, iv.start_minutes, zone), _local_instant(day, iv.end_minutes, zone))
            for iv in self.weekly_hours.get(WEEKDAYS[day.weekday()], [])
        ]

    def works(
        self,
        clinic: Clinic,
        start: datetime,
        end: datetime,
        claim_end: datetime,
        spans: list[tuple[datetime, datetime]] | None = None,
    ) -> bool:
        """Whether [start, end) lies in one of the provider's intervals of that local day (which the
        clinic's schedule also covers) and no time off overlaps [start, claim_end).  ``spans``: that
        day's :meth:`spans_on`, when the caller has them."""
        if spans is None:
            spans = self.spans_on(clinic, start.astimezone(clinic.zone).date())
        inside = any(lo <= start and end <= hi for lo, hi in spans)
        return inside and not any(t.start < claim_end and start < t.end for t in self.time_off)


@dataclass
class Resource:
    id: uuid.UUID
    clinic_id: uuid.UUID
    display_name: str
    resource_type: str
    species: tuple[str, ...] = ()  # empty: every species
    seq: int = 0
    archived: bool = False
    version: int = 1

    @property
    def etag(self) -> str:
        return f"r{self.version}"

    @property
    def name(self) -> str:
        return f"clinics/{self.clinic_id}/resources/{self.id}"

    def fits(self, species: str | None) -> bool:
        return not self.archived and (species is None or not self.species or species in self.species)


@dataclass(frozen=True)
class Claim:
    """A live claim: what a held or confirmed reservation holds over [start, end)."""

    kind: ClaimKind
    subject_id: uuid.UUID
    start: datetime
    end: datetime
    lock_id: uuid.UUID | None = None


@dataclass
class ClinicSchedule:
    """A clinic's providers (with their time off) and resource items, archived ones included."""

    providers: dict[uuid.UUID, Provider] = field(default_factory=dict)
    resources: list[Resource] = field(default_factory=list)

    def types(self) -> dict[str, int]:
        """Resource type → number of items not archived."""
        out: dict[str, int] = defaultdict(int)
        for r in self.resources:
            if not r.archived:
                out[r.resource_type] += 1
        return dict(out)


def subjects_of(svc: Service, sched: ClinicSchedule, pet_id: uuid.UUID | None = None) -> list[uuid.UUID]:
    """Whose claims a service's availability or hold depends on: its providers, the items of the types
    it needs, and the pet."""
    types = {n.resource_type for n in svc.needs}
    out = list(svc.provider_ids) + [r.id for r in sched.resources if r.resource_type in types]
    return out + ([pet_id] if pet_id is not None else [])


def claim_end(svc: Service, end: datetime) -> datetime:
    """Every claim runs to the end of the appointment plus the service's buffer."""
    return end + timedelta(minutes=svc.buffer_after_minutes)


def scheduled(svc: Service) -> bool:
    """Whether the service needs providers or resources (else: ``capacity`` anonymous units)."""
    return bool(svc.provider_ids or svc.needs)


class Busy:
    """Live claims indexed by subject, for "is it free over [start, end)" and the per-day counts: per
    subject the claims sorted by start with the running maximum of their ends, so both questions are
    a binary search (a month view asks them tens of thousands of times)."""

    def __init__(self, claims: Iterable[Claim]) -> None:
        spans: dict[uuid.UUID, list[tuple[datetime, datetime]]] = defaultdict(list)
        for c in claims:
            spans[c.subject_id].append((c.start, c.end))
        self.starts: dict[uuid.UUID, list[datetime]] = {}
        self.reach: dict[uuid.UUID, list[datetime]] = {}  # reach[i]: the latest end among the first i+1
        for subject, items in spans.items():
            items.sort()
            self.starts[subject] = [a for a, _ in items]
            reach, latest = [], items[0][1]
            for _, b in items:
                latest = max(latest, b)
                reach.append(latest)
            self.reach[subject] = reach

    def free(self, subject: uuid.UUID, start: datetime, end: datetime) -> bool:
        starts = self.starts.get(subject)
        if not starts:
            return True
        i = bisect_left(starts, end)  # the claims starting before ``end``
        return i == 0 or self.reach[subject][i - 1] <= start

    def count_starting(self, subject: uuid.UUID, start: datetime, end: datetime) -> int:
        starts = self.starts.get(subject, [])
        return bisect_left(starts, end) - bisect_left(starts, start)


def local_day_range(clinic: Clinic, day: date) -> tuple[datetime, datetime]:
    zone = clinic.zone
    return _local_instant(day, 0, zone), _local_instant(day + timedelta(days=1), 0, zone)


def stable_rank(day: date, provider_id: uuid.UUID) -> str:
    """A per-day order of providers: ties do not always favour the same person, yet every replica and
    every retry of that day sees the same order."""
    return hashlib.sha256(f"{day.isoformat()}|{provider_id}".encode()).hexdigest()


def order_any(providers: Sequence[Provider], busy: Busy, clinic: Clinic, day: date) -> list[Provider]:
    """The "any available" rule (ASSIGNMENT_RULE_ANY_FEWEST_THAT_DAY): fewest live claims starting that
    local day first, then the stable per-day order."""
    lo, hi = local_day_range(clinic, day)
    return sorted(providers, key=lambda p: (busy.count_starting(p.id, lo, hi), stable_rank(day, p.id)))


def qualified(svc: Service, sched: ClinicSchedule) -> list[Provider]:
    return [
        sched.providers[p]
        for p in svc.provider_ids
        if p in sched.providers and not sched.providers[p].archived
    ]


def free_providers(
    svc: Service,
    sched: ClinicSchedule,
    clinic: Clinic,
    slot: GridSlot,
    busy: Busy,
    only: uuid.UUID | None = None,
    spans: dict[uuid.UUID, list[tuple[datetime, datetime]]] | None = None,
) -> list[Provider]:
    """The qualified providers who work and are free over the slot, in "any available" order
    (``spans``: each provider's working instants that day, when the caller has them)."""
    until = claim_end(svc, slot.end)
    free = [
        p
        for p in qualified(svc, sched)
        if (only is None or p.id == only)
        and p.works(clinic, slot.start, slot.end, until, spans.get(p.id) if spans is not None else None)
        and busy.free(p.id, slot.start, until)
    ]
    return order_any(free, busy, clinic, slot.start.astimezone(clinic.zone).date())


def pick_items(
    svc: Service,
    sched: ClinicSchedule,
    start: datetime,
    until: datetime,
    busy: Busy,
    species: str | None,
    lost: frozenset[uuid.UUID] = frozenset(),
) -> list[Resource] | None:
    """For each need, the first ``quantity`` items of its type (by their number) fit for the species and
    free over [start, until); None when a need cannot be met."""
    out: list[Resource] = []
    for need in svc.needs:
        items = sorted(
            (
                r
                for r in sched.resources
                if r.resource_type == need.resource_type
                and r.fits(species)
                and r.id not in lost
                and busy.free(r.id, start, until)
            ),
            key=lambda r: (r.seq, str(r.id)),
        )
        if len(items) < need.quantity:
            return None
        out.extend(items[: need.quantity])
    return out


def free_item_sets(
    svc: Service, sched: ClinicSchedule, start: datetime, until: datetime, busy: Busy, species: str | None
) -> int:
    """How many appointments the free items allow at once (the tightest need)."""
    counts = []
    for need in svc.needs:
        n = sum(
            1
            for r in sched.resources
            if r.resource_type == need.resource_type and r.fits(species) and busy.free(r.id, start, until)
        )
        counts.append(n // need.quantity)
    return min(counts) if counts else 1_000_000


@dataclass(frozen=True)
class HoldPlan:
    """What a hold of a scheduled service tries, in order: providers (``[None]`` for a service without
    providers) and how the first was chosen."""

    providers: list[Provider | None]
    assignment: Assignment | None


def plan_hold(
    svc: Service,
    sched: ClinicSchedule,
    clinic: Clinic,
    slot: GridSlot,
    busy: Busy,
    pet_id: uuid.UUID,
    provider_id: uuid.UUID | None,
) -> HoldPlan:
    """The candidates of a hold, or the error that says why there are none (no race involved)."""
    until = claim_end(svc, slot.end)
    if not busy.free(pet_id, slot.start, until):
        raise PetBusy("this pet already has an appointment at that time", metadata={"field": "pet_id"})
    if not svc.provider_ids:
        return HoldPlan([None], None)
    if provider_id is not None:
        chosen = next((p for p in qualified(svc, sched) if p.id == provider_id), None)
        if chosen is None:
            raise InvalidArgument(
                "provider_id: does not perform this service",
                reason="PROVIDER_NOT_QUALIFIED",
                violations=[
                    FieldViolation("provider_id", "does not perform this service", "PROVIDER_NOT_QUALIFIED")
                ],
            )
        if not chosen.works(clinic, slot.start, slot.end, until):
            raise ProviderUnavailable(
                f"{chosen.display_name} does not work at that time",
                violations=[
                    FieldViolation("provider_id", "does not work at that time", "PROVIDER_UNAVAILABLE")
                ],
            )
        if not busy.free(chosen.id, slot.start, until):
            raise ProviderTaken(
                f"{chosen.display_name} is booked at that time", metadata={"provider_id": str(chosen.id)}
            )
        return HoldPlan([chosen], Assignment.CHOSEN)
    free = free_providers(svc, sched, clinic, slot, busy)
    if not free:
        raise SlotUnavailable("no provider for this service is free at that time")
    return HoldPlan(list(free), Assignment.ANY_FEWEST_THAT_DAY)


def require_items(
    svc: Service,
    sched: ClinicSchedule,
    slot: GridSlot,
    busy: Busy,
    species: str | None,
    lost: frozenset[uuid.UUID] = frozenset(),
) -> list[Resource]:
    items = pick_items(svc, sched, slot.start, claim_end(svc, slot.end), busy, species, lost)
    if items is None:
        raise ResourceTaken("a room or equipment this service needs is taken at that time")
    return items


def hold_claims(
    svc: Service,
    clinic_id: uuid.UUID,
    pet_id: uuid.UUID,
    slot: GridSlot,
    provider: Provider | None,
    items: Sequence[Resource],
) -> list[Claim]:
    until = claim_end(svc, slot.end)
    out = [Claim(ClaimKind.PET, pet_id, slot.start, until)]
    if provider is not None:
        out.append(Claim(ClaimKind.PROVIDER, provider.id, slot.start, until))
    out.extend(Claim(ClaimKind.RESOURCE, r.id, slot.start, until) for r in items)
    return out


def hold_unit(provider: Provider | None, items: Sequence[Resource]) -> int:
    """The reservation's ``unit`` for a scheduled service: distinct for two overlapping holds of the
    service (their providers, else their first items, differ), so ``no_double_booking`` agrees."""
    if provider is not None:
        return provider.seq
    return items[0].seq if items else 1


@dataclass(frozen=True)
class HoldOptions:
    """What a scheduled hold's one statement (``BookingRepository.hold_scheduled``) chooses from, all
    decided without the claims: the candidate providers (qualified, working over the slot) in the
    stable per-day order, of which it takes the first free one with the fewest live provider claims
    starting in [day_start, day_end) (the "any" rule of :func:`order_any`; a chosen provider is the one
    candidate, and an empty day counts nothing); per need, its quantity and the items of its type (not
    archived) in the order :func:`pick_items` takes them, of which it takes the first free ones that fit
    the pet's species; and the species the service allows (empty: any)."""

    providers: tuple[Provider, ...]  # empty: a service without providers
    assignment: Assignment | None
    day_start: datetime
    day_end: datetime
    needs: tuple[tuple[int, tuple[Resource, ...]], ...]
    species_allowed: tuple[str, ...]


def hold_options(
    svc: Service,
    sched: ClinicSchedule,
    clinic: Clinic,
    slot: GridSlot,
    provider_id: uuid.UUID | None,
) -> HoldOptions | None:
    """The options of a scheduled hold, or None when the schedule alone refuses it (a chosen provider
    who does not perform the service or does not work then, nobody qualified working): the caller then
    plans with the claims (:func:`plan_hold`), which says why, in its order."""
    until = claim_end(svc, slot.end)
    day_start = day_end = slot.start  # an empty day: no count (a chosen provider, or none)
    assignment: Assignment | None = None
    providers: tuple[Provider, ...] = ()
    if svc.provider_ids:
        works = [
            p
            for p in qualified(svc, sched)
            if (provider_id is None or p.id == provider_id) and p.works(clinic, slot.start, slot.end, until)
        ]
        if not works:
            return None
        if provider_id is not None:
            providers, assignment = (works[0],), Assignment.CHOSEN
        else:
            day = slot.start.astimezone(clinic.zone).date()
            providers = tuple(sorted(works, key=lambda p: stable_rank(day, p.id)))
            assignment = Assignment.ANY_FEWEST_THAT_DAY
            day_start, day_end = local_day_range(clinic, day)
    needs = tuple(
        (
            need.quantity,
            tuple(
                sorted(
                    (r for r in sched.resources if r.resource_type == need.resource_type and not r.archived),
                    key=lambda r: (r.seq, str(r.id)),
                )
            ),
        )
        for need in svc.needs
    )
    return HoldOptions(providers, assignment, day_start, day_end, needs, svc.species_allowed)


@dataclass(frozen=True)
class ScheduledAttempt:
    """What a scheduled hold's one statement did: inserted the hold (its unit, provider, items), or
    nothing, because the request id was used (``earlier``), a claim it made was refused (``raced``: a
    concurrent winner, whose claims a fresh statement sees, or a lapsed hold not expired yet) or for
    any other reason (a refusal, the catalog moved on): the caller then plans with the claims."""

    inserted: bool
    earlier: bool = False
    unit: int = 0
    provider_id: uuid.UUID | None = None
    resource_ids: tuple[uuid.UUID, ...] = ()
    raced: bool = False


def choose_from(
    options: HoldOptions, busy: Busy, start: datetime, until: datetime, species: str
) -> tuple[Provider | None, list[Resource]] | None:
    """What the statement of :class:`HoldOptions` takes, given the live claims (the fakes' statement,
    and the rule the SQL follows): None when the pet, every candidate or a need's items are taken."""
    provider: Provider | None = None
    if options.providers:
        free = [p for p in options.providers if busy.free(p.id, start, until)]
        if not free:
            return None
        rank = {p.id: i for i, p in enumerate(options.providers)}
        provider = min(
            free, key=lambda p: (busy.count_starting(p.id, options.day_start, options.day_end), rank[p.id])
        )
    items: list[Resource] = []
    for quantity, candidates in options.needs:
        fit = [r for r in candidates if r.fits(species) and busy.free(r.id, start, until)]
        if len(fit) < quantity:
            return None
        items.extend(fit[:quantity])
    return provider, items


# -- availability ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SlotView:
    start: datetime
    end: datetime
    remaining: int
    providers: tuple[Provider, ...] = ()


def day_view(
    clinic: Clinic,
    svc: Service,
    sched: ClinicSchedule,
    day: date,
    busy: Busy,
    now: datetime,
    *,
    provider_id: uuid.UUID | None = None,
    pet_id: uuid.UUID | None = None,
    species: str | None = None,
    stop_at_first: bool = False,
) -> list[SlotView]:
    """The day's grid of a scheduled service with what is free: a slot is offered when the pet (if
    named) is free, the needed items are free and (for a service with providers) some qualified provider
    works and is free.  ``stop_at_first``: up to the first offered slot (the month view)."""
    earliest, latest = bookable_window(svc, now)
    out: list[SlotView] = []
    spans = {p.id: p.spans_on(clinic, day) for p in qualified(svc, sched)}  # once a day, not per slot
    for g in slot_grid(clinic, svc, day) if svc.bookable else []:
        until = claim_end(svc, g.end)
        remaining, provs = 0, []
        if (
            g.start > now
            and earliest <= g.start <= latest
            and (pet_id is None or busy.free(pet_id, g.start, until))
        ):
            sets = free_item_sets(svc, sched, g.start, until, busy, species)
            if svc.provider_ids:
                provs = free_providers(svc, sched, clinic, g, busy, provider_id, spans) if sets else []
                remaining = min(len(provs), sets)
            else:
                remaining = min(sets, 100)
        out.append(SlotView(g.start, g.end, remaining, tuple(provs) if remaining else ()))
        if stop_at_first and remaining:
            break
    return out


def month_days(year: int, month: int) -> list[date]:
    first = date(year, month, 1)
    nxt = date(year + (month == 12), month % 12 + 1, 1)
    return [first + timedelta(days=i) for i in range((nxt - first).days)]


def month_view(
    clinic: Clinic,
    svc: Service,
    sched: ClinicSchedule | None,
    days: Sequence[date],
    busy: Busy,
    now: datetime,
    *,
    capacity_taken: Sequence[tuple[datetime, datetime]] = (),
    provider_id: uuid.UUID | None = None,
    pet_id: uuid.UUID | None = None,
    species: str | None = None,
) -> list[tuple[date, bool]]:
    """Per day, whether any slot is free: closed days and days outside the booking window are skipped
    without building their grid, and a day's grid stops at its first free slot."""
    earliest, latest = bookable_window(svc, now)
    out = []
    for day in days:
        lo, hi = local_day_range(clinic, day)
        if not svc.bookable or not clinic.intervals_on(day) or hi <= max(now, earliest) or lo > latest:
            out.append((day, False))
            continue
        if sched is not None and scheduled(svc):
            views = day_view(
                clinic,
                svc,
                sched,
                day,
                busy,
                now,
                provider_id=provider_id,
                pet_id=pet_id,
                species=species,
                stop_at_first=True,
            )
            out.append((day, any(v.remaining for v in views)))
            continue
        free = False
        for g in slot_grid(clinic, svc, day):
            if not (g.start > now and earliest <= g.start <= latest):
                continue
            if pet_id is not None and not busy.free(pet_id, g.start, claim_end(svc, g.end)):
                continue
            used = sum(1 for s, e in capacity_taken if s < g.end and g.start < e)
            if used < svc.capacity:
                free = True
                break
        out.append((day, free))
    return out


# -- admin rules --------------------------------------------------------------------------------------


def check_provider_hours(
    clinic: Clinic, entries: Sequence[tuple[str, str, Interval]]
) -> tuple[dict[str, list[Interval]], list[FieldViolation]]:
    """A provider's weekly hours from the request's (field path, weekday, interval) entries, and their
    violations: within a day no overlap and end after start; each interval inside one of the clinic's
    intervals of that weekday."""
    by_day: dict[str, list[tuple[str, Interval]]] = defaultdict(list)
    for path, day, iv in entries:
        by_day[day].append((path, iv))
    out: list[FieldViolation] = []
    for day, ivs in by_day.items():
        out += check_intervals(ivs)
        clinic_ivs = clinic.opening_hours.get(day, [])
        for path, iv in ivs:
            if iv.end_minutes <= iv.start_minutes:
                continue
            if not any(
                c.start_minutes <= iv.start_minutes and iv.end_minutes <= c.end_minutes for c in clinic_ivs
            ):
                out.append(
                    FieldViolation(path, "is outside the clinic's opening hours", "OUTSIDE_CLINIC_HOURS")
                )
    hours = {d: sorted((iv for _, iv in ivs), key=lambda iv: iv.start_minutes) for d, ivs in by_day.items()}
    return hours, out


def uncovered(provider: Provider, clinic: Clinic, start: datetime, end: datetime) -> bool:
    """Whether a booking [start, end) of the provider is no longer covered by their hours and time off."""
    return not provider.works(clinic, start, end, end)
