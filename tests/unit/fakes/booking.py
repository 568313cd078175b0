"""In-memory BookingRepository (booking_svc.ports) with the schema's rules: one active reservation per
service unit and overlapping range, one reservation per owner + request id, one booking per lifecycle
request id (DuplicateRequest); held to PostgreSQL's behaviour by tests/contracts/booking_repository.py.
And the use cases wired on it (``booking_use_cases``), as ``server.build`` wires them."""

from __future__ import annotations

import asyncio
import copy
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any

from booking_svc.domain import (
    ACTIVE_STATES,
    OPEN_REFUND_STATES,
    Booking,
    BookingState,
    Busy,
    Claim,
    ClaimKind,
    Clinic,
    ClinicBooking,
    ClinicSchedule,
    Closure,
    DuplicateRequest,
    HoldAttempt,
    HoldOptions,
    Interval,
    Pet,
    Provider,
    RefundState,
    Reservation,
    ReservationState,
    Resource,
    ScheduledAttempt,
    Service,
    ServiceNeed,
    TimeOff,
    choose_from,
    hold_unit,
)
from booking_svc.handlers import (
    CatalogHandlers,
    ClinicAdminHandlers,
    LifecycleHandlers,
    PetHandlers,
    RefundHandlers,
    ReservationHandlers,
)
from booking_svc.ports import (
    ChangeEncoder,
    EventEncoder,
    OutboxEvent,
    RefundPort,
    RefundResult,
    ReservationNews,
)
from petpro.clock import utcnow
from tests.unit.fakes import FakeUnitOfWork


@dataclass
class BookingStore:
    clinics: dict[uuid.UUID, Clinic] = field(default_factory=dict)
    services: dict[uuid.UUID, Service] = field(default_factory=dict)
    pets: dict[uuid.UUID, Pet] = field(default_factory=dict)
    reservations: dict[uuid.UUID, Reservation] = field(default_factory=dict)
    bookings: dict[uuid.UUID, Booking] = field(default_factory=dict)
    outbox: list[OutboxEvent] = field(default_factory=list)
    sent: set[uuid.UUID] = field(default_factory=set)  # outbox event ids the relay has published
    processed: dict[uuid.UUID, str] = field(default_factory=dict)  # consumed event id → topic
    catalog_version: int = 1
    catalog_version_reads: int = 0  # round trips a real repository would make for it
    holds: int = 0  # ReserveSlot statements (BookingRepository.hold)
    clinic_requests: dict[uuid.UUID, uuid.UUID] = field(default_factory=dict)  # request id → clinic id
    service_requests: dict[uuid.UUID, uuid.UUID] = field(default_factory=dict)  # request id → service id
    requests: dict[uuid.UUID, tuple[uuid.UUID, str, str]] = field(default_factory=dict)
    refund_due: dict[uuid.UUID, datetime | None] = field(default_factory=dict)  # booking → refund_next_at
    providers: dict[uuid.UUID, Provider] = field(default_factory=dict)
    resources: dict[uuid.UUID, Resource] = field(default_factory=dict)
    schedule_requests: dict[uuid.UUID, uuid.UUID] = field(
        default_factory=dict
    )  # request id → provider/resource


# what save_booking_change writes (a lifecycle change); the refund's bookkeeping is written elsewhere
LIFECYCLE_FIELDS = (
    "state",
    "start",
    "end",
    "cancelled_at",
    "refund_minor",
    "refund_state",
    "refund_updated_at",
    "cancel_reason",
    "cancelled_by",
    "updated_at",
    "version",
    "reschedule_count",
    "provider_id",
    "resource_ids",
)


def _after(key: tuple[str, str], after: tuple[str, ...] | None) -> bool:
    return after is None or key > after


def _calendar_since() -> date:
    """The oldest day a clinic's calendar still shows: two days before today (PostgreSQL's
    ``current_date - 2``, so that every time zone's today is covered)."""
    return datetime.now(UTC).date() - timedelta(days=2)


def _calendar(clinic: Clinic) -> Clinic:
    """The clinic as the repository returns it: closures and overrides that have not passed."""
    since = _calendar_since()
    out = copy.deepcopy(clinic)
    out.closures = sorted(
        (c for c in out.closures if c.end_date >= since), key=lambda c: (c.start_date, str(c.id))
    )
    out.overrides = {day: ivs for day, ivs in out.overrides.items() if day >= since}
    return out


def _overlaps(a: Reservation, start: datetime, end: datetime) -> bool:
    return a.start < end and start < a.end


def _claims(r: Reservation) -> list[Claim]:
    """What the reservation claims (the claims table's rows): a scheduled one its provider, items and
    pet over the slot plus the buffer; a capacity-only one its unit over the slot and its pet."""
    until = r.claim_end or r.end
    out = [Claim(ClaimKind.PET, r.pet_id, r.start, until, r.lock_id)]
    if r.provider_id is not None:
        out.append(Claim(ClaimKind.PROVIDER, r.provider_id, r.start, until, r.lock_id))
    out += [Claim(ClaimKind.RESOURCE, i, r.start, until, r.lock_id) for i in r.resource_ids]
    return out


def _clash(a: list[Claim], b: list[Claim]) -> str | None:
    for x in a:
        for y in b:
            if x.kind == y.kind and x.subject_id == y.subject_id and x.start < y.end and y.start < x.end:
                return x.kind.value
    return None


class FakeBookingRepository:
    def __init__(self, store: BookingStore) -> None:
        self.store = store

    # -- catalog
    async def list_clinics(self, after: tuple[str, ...] | None, limit: int) -> list[Clinic]:
        rows = sorted(self.store.clinics.values(), key=lambda c: (c.name, str(c.id)))
        return [copy.deepcopy(c) for c in rows if _after((c.name, str(c.id)), after)][:limit]

    async def clinic(self, clinic_id: uuid.UUID, *, for_update: bool = False) -> Clinic | None:
        clinic = self.store.clinics.get(clinic_id)
        return _calendar(clinic) if clinic else None

    async def list_services(
        self, clinic_id: uuid.UUID, after: tuple[str, ...] | None, limit: int
    ) -> list[Service]:
        rows = sorted(
            (s for s in self.store.services.values() if s.clinic_id == clinic_id and not s.archived),
            key=lambda s: (s.name, str(s.id)),
        )
        return [copy.deepcopy(s) for s in rows if _after((s.name, str(s.id)), after)][:limit]

    async def service_with_clinic(self, service_id: uuid.UUID) -> tuple[Service, Clinic] | None:
        svc = self.store.services.get(service_id)
        if svc is None:
            return None
        return copy.deepcopy(svc), _calendar(self.store.clinics[svc.clinic_id])

    async def service(self, service_id: uuid.UUID, *, for_update: bool = False) -> Service | None:
        return copy.deepcopy(self.store.services.get(service_id))

    # -- catalog changes
    async def catalog_version(self) -> int:
        self.store.catalog_version_reads += 1
        return self.store.catalog_version

    async def bump_catalog(self) -> None:
        self.store.catalog_version += 1

    async def add_clinic(self, clinic: Clinic, request_id: uuid.UUID | None = None) -> uuid.UUID:
        if request_id is not None and request_id in self.store.clinic_requests:
            return self.store.clinic_requests[request_id]
        self.store.clinics[clinic.id] = replace(copy.deepcopy(clinic), closures=[], overrides={})
        if request_id is not None:
            self.store.clinic_requests[request_id] = clinic.id
        return clinic.id

    async def save_clinic(self, clinic: Clinic) -> None:
        stored = self.store.clinics[clinic.id]
        for name in ("name", "time_zone", "address", "phone", "email", "locale"):
            setattr(stored, name, getattr(clinic, name))
        stored.opening_hours = copy.deepcopy(clinic.opening_hours)
        stored.version += 1
        clinic.version += 1

    async def add_service(self, svc: Service, request_id: uuid.UUID | None = None) -> uuid.UUID:
        if request_id is not None and request_id in self.store.service_requests:
            return self.store.service_requests[request_id]
        self.store.services[svc.id] = copy.deepcopy(svc)
        if request_id is not None:
            self.store.service_requests[request_id] = svc.id
        return svc.id

    async def save_service(self, svc: Service, *, archive_at: datetime | None = None) -> None:
        stored = self.store.services[svc.id]
        self.store.services[svc.id] = replace(
            copy.deepcopy(svc), version=stored.version + 1, archived=stored.archived or archive_at is not None
        )
        svc.version += 1

    async def add_closure(self, c: Closure) -> None:
        self.store.clinics[c.clinic_id].closures.append(c)

    async def delete_closure(self, clinic_id: uuid.UUID, closure_id: uuid.UUID) -> bool:
        clinic = self.store.clinics.get(clinic_id)
        if clinic is None:
            return False
        before = len(clinic.closures)
        clinic.closures = [c for c in clinic.closures if c.id != closure_id]
        return len(clinic.closures) < before

    async def list_closures(
        self, clinic_id: uuid.UUID, after: tuple[str, ...] | None, limit: int
    ) -> list[Closure]:
        clinic = self.store.clinics.get(clinic_id)
        rows = _calendar(clinic).closures if clinic else []
        return [c for c in rows if _after((c.start_date.isoformat(), str(c.id)), after)][:limit]

    async def put_override(self, clinic_id: uuid.UUID, day: date, ivs: list[Interval]) -> None:
        self.store.clinics[clinic_id].overrides[day] = list(ivs)

    async def delete_override(self, clinic_id: uuid.UUID, day: date) -> bool:
        clinic = self.store.clinics.get(clinic_id)
        return clinic is not None and clinic.overrides.pop(day, None) is not None

    async def upcoming_bookings(
        self, clinic_id: uuid.UUID, now: datetime, start: datetime | None = None, end: datetime | None = None
    ) -> list[Booking]:
        rows = [
            b
            for b in self.store.bookings.values()
            if b.clinic_id == clinic_id
            and b.state == "CONFIRMED"
            and b.start > now
            and (start is None or b.start >= start)
            and (end is None or b.start < end)
        ]
        return [copy.deepcopy(b) for b in sorted(rows, key=lambda b: (b.start, str(b.id)))]

    async def list_clinic_bookings(
        self,
        clinic_id: uuid.UUID,
        start: datetime,
        end: datetime,
        states: list[str],
        after: tuple[str, ...] | None,
        limit: int,
    ) -> list[ClinicBooking]:
        rows = sorted(
            (
                b
                for b in self.store.bookings.values()
                if b.clinic_id == clinic_id and start <= b.start < end and (not states or b.state in states)
            ),
            key=lambda b: (b.start, str(b.id)),
        )
        out = []
        for b in rows:
            if not _after((b.start.isoformat(), str(b.id)), after):
                continue
            res, pet = self.store.reservations[b.lock_id], self.store.pets[b.pet_id]
            out.append(
                ClinicBooking(
                    copy.deepcopy(b),
                    self.store.services[b.service_id].name,
                    pet.name,
                    pet.species,
                    res.owner_name,
                    res.owner_email,
                )
            )
        return out[:limit]

    # -- pets
    async def add_pet(self, pet: Pet) -> None:
        self.store.pets[pet.id] = copy.deepcopy(pet)

    async def pet(self, pet_id: uuid.UUID, *, for_update: bool = False) -> Pet | None:
        return copy.deepcopy(self.store.pets.get(pet_id))

    async def save_pet(self, pet: Pet) -> None:
        self.store.pets[pet.id] = copy.deepcopy(pet)

    async def pet_booked(self, pet_id: uuid.UUID) -> bool:
        return any(b.pet_id == pet_id for b in self.store.bookings.values())

    async def future_bookings_of_pet(self, pet_id: uuid.UUID, now: datetime) -> list[uuid.UUID]:
        rows = sorted(
            (b for b in self.store.bookings.values() if b.pet_id == pet_id and b.state == "CONFIRMED"),
            key=lambda b: (b.start, str(b.id)),
        )
        return [b.id for b in rows if b.start > now]

    async def list_pets(self, owner: uuid.UUID, after: tuple[str, ...] | None, limit: int) -> list[Pet]:
        rows = sorted(
            (p for p in self.store.pets.values() if p.owner_user_id == owner and p.archived_at is None),
            key=lambda p: (p.created_at.isoformat(), str(p.id)),
        )
        return [copy.deepcopy(p) for p in rows if _after((p.created_at.isoformat(), str(p.id)), after)][
            :limit
        ]

    # -- reservations
    def _with_booking(self, r: Reservation) -> Reservation:
        booking = next((b.id for b in self.store.bookings.values() if b.lock_id == r.lock_id), None)
        return replace(copy.deepcopy(r), booking_id=booking)

    async def reservation(self, lock_id: uuid.UUID) -> Reservation | None:
        r = self.store.reservations.get(lock_id)
        return self._with_booking(r) if r else None

    async def reservation_by_request(self, owner: uuid.UUID, request_id: str) -> Reservation | None:
        for r in self.store.reservations.values():
            if r.owner_user_id == owner and r.request_id == request_id:
                return self._with_booking(r)
        return None

    # the schema's rules, in Python: a reservation is *live* at ``now`` while confirmed, or held and not
    # expired; the exclusion constraint counts every active (HELD or CONFIRMED) row, lapsed or not
    def _overlapping(
        self, service_id: uuid.UUID, start: datetime, end: datetime, skip: uuid.UUID | None = None
    ) -> list[Reservation]:
        return [
            r
            for r in self.store.reservations.values()
            if r.service_id == service_id and _overlaps(r, start, end) and r.lock_id != skip
        ]

    def _excludes(self, res: Reservation, unit: int, start: datetime, end: datetime) -> bool:
        """Whether the exclusion constraint refuses ``res`` active on ``unit`` over [start, end)."""
        return any(
            r.unit == unit and r.state in ACTIVE_STATES
            for r in self._overlapping(res.service_id, start, end, skip=res.lock_id)
        )

    def _expire_lapsed(
        self, service_id: uuid.UUID, start: datetime, end: datetime, now: datetime, unit: int | None = None
    ) -> int:
        """Expire the lapsed holds over [start, end) (on ``unit`` only, if given)."""
        lapsed = [
            r
            for r in self._overlapping(service_id, start, end)
            if r.state == ReservationState.HELD and r.expires_at <= now and unit in (None, r.unit)
        ]
        for r in lapsed:
            r.state = ReservationState.EXPIRED
        return len(lapsed)

    def _free_unit(
        self,
        service_id: uuid.UUID,
        start: datetime,
        end: datetime,
        now: datetime,
        capacity: int,
        skip: uuid.UUID,
    ) -> int | None:
        live = {
            r.unit
            for r in self._overlapping(service_id, start, end, skip=skip)
            if r.state == ReservationState.CONFIRMED
            or (r.state == ReservationState.HELD and r.expires_at > now)
        }
        return next((u for u in range(1, capacity + 1) if u not in live), None)

    async def hold(self, res: Reservation, capacity: int, catalog_version: int) -> HoldAttempt:
        self.store.holds += 1
        version = self.store.catalog_version
        earlier = any(
            r.owner_user_id == res.owner_user_id and r.request_id == res.request_id
            for r in self.store.reservations.values()
        )
        pet = self.store.pets.get(res.pet_id)
        owner = pet.owner_user_id if pet and pet.archived_at is None else None  # archived: no such pet
        ok = version == catalog_version and not earlier and owner == res.owner_user_id
        unit = self._free_unit(res.service_id, res.start, res.end, res.created_at, capacity, res.lock_id)
        if ok and unit is not None and self._excludes(res, unit, res.start, res.end):
            # a lapsed hold the sweeper has not expired is in the way: the range's lapsed holds expire
            self._expire_lapsed(res.service_id, res.start, res.end, res.created_at)
        if not ok or unit is None:
            return HoldAttempt(earlier, owner, unit, False, version)
        if self._claim_conflict(res) == "pet":
            # the pet is claimed over the range: by a lapsed hold (expired, then once more), or busy
            self._expire_lapsed_claims(res, res.created_at)
            if self._claim_conflict(res) == "pet":
                return HoldAttempt(False, owner, None, False, version, conflict="pet")
        self.store.reservations[res.lock_id] = replace(copy.deepcopy(res), unit=unit)
        return HoldAttempt(earlier, owner, unit, True, version)

    def _claim_conflict(self, res: Reservation, skip: uuid.UUID | None = None) -> str | None:
        """The kind of the first claim of ``res`` an active reservation's claim overlaps (the claims
        table's exclusion constraints count lapsed holds until they are expired)."""
        mine = _claims(res)
        for r in self.store.reservations.values():
            if r.lock_id in (res.lock_id, skip) or r.state not in ACTIVE_STATES:
                continue
            kind = _clash(mine, _claims(r))
            if kind is not None:
                return kind
        return None

    def _expire_lapsed_claims(self, res: Reservation, now: datetime) -> int:
        mine = _claims(res)
        n = 0
        for r in self.store.reservations.values():
            if r.lock_id != res.lock_id and r.state == ReservationState.HELD and r.expires_at <= now:
                if _clash(mine, _claims(r)):
                    r.state = ReservationState.EXPIRED
                    n += 1
        return n

    async def lock_for_confirm(self, lock_id: uuid.UUID) -> tuple[Reservation, Pet, int] | None:
        r = self.store.reservations.get(lock_id)
        if r is None:
            return None
        return self._with_booking(r), copy.deepcopy(self.store.pets[r.pet_id]), self.store.catalog_version

    async def expire_overlapping(
        self, service_id: uuid.UUID, start: datetime, end: datetime, now: datetime
    ) -> int:
        return self._expire_lapsed(service_id, start, end, now)

    async def try_set_state(
        self,
        lock_id: uuid.UUID,
        state: ReservationState,
        now: datetime,
        *,
        payment_id: uuid.UUID | None = None,
        failure_reason: str | None = None,
    ) -> bool:
        r = self.store.reservations[lock_id]
        if state in ACTIVE_STATES and (
            self._excludes(r, r.unit, r.start, r.end) or self._claim_conflict(r) is not None
        ):
            return False
        r.state = state
        if payment_id is not None:
            r.payment_id = payment_id
        if failure_reason is not None:
            r.failure_reason = failure_reason
        return True

    async def set_reservation_state(self, lock_id: uuid.UUID, state: ReservationState, now: datetime) -> None:
        self.store.reservations[lock_id].state = state

    async def move_reservation(
        self, lock_id: uuid.UUID, capacity: int, start: datetime, end: datetime, now: datetime
    ) -> int | None:
        r = self.store.reservations[lock_id]
        unit = self._free_unit(r.service_id, start, end, now, capacity, lock_id)
        if unit is None:
            return None
        moved = self._moved(r, start, end)
        self._expire_lapsed_claims(moved, now)
        if self._claim_conflict(moved) is not None:
            return None
        self._expire_lapsed(r.service_id, start, end, now, unit)
        r.unit, r.start, r.end, r.claim_end = unit, start, end, moved.claim_end
        return unit

    @staticmethod
    def _moved(r: Reservation, start: datetime, end: datetime) -> Reservation:
        """``r`` over [start, end), its claims keeping their buffer (the trigger's rule)."""
        until = end + ((r.claim_end or r.end) - r.end)
        return replace(copy.deepcopy(r), start=start, end=end, claim_end=until)

    async def expire_due(self, now: datetime, limit: int = 500) -> list[uuid.UUID]:
        due = sorted(
            (
                r
                for r in self.store.reservations.values()
                if r.state == ReservationState.HELD and r.expires_at <= now
            ),
            key=lambda r: r.expires_at,
        )
        for r in due[:limit]:
            r.state = ReservationState.EXPIRED
        return [r.lock_id for r in due[:limit]]

    async def active_counts(
        self, service_id: uuid.UUID, start: datetime, end: datetime, now: datetime
    ) -> list[tuple[datetime, datetime]]:
        return [
            (r.start, r.end)
            for r in self._overlapping(service_id, start, end)
            if r.state == ReservationState.CONFIRMED
            or (r.state == ReservationState.HELD and r.expires_at > now)
        ]

    # -- scheduling (docs/design/scheduling.md)
    async def clinic_schedule(self, clinic_id: uuid.UUID, now: datetime) -> ClinicSchedule:
        provs = {}
        for p in sorted(self.store.providers.values(), key=lambda p: p.seq):
            if p.clinic_id == clinic_id:
                q = copy.deepcopy(p)
                q.time_off = sorted((t for t in q.time_off if t.end > now), key=lambda t: t.start)
                provs[q.id] = q
        items = sorted(
            (copy.deepcopy(r) for r in self.store.resources.values() if r.clinic_id == clinic_id),
            key=lambda r: r.seq,
        )
        return ClinicSchedule(provs, items)

    async def provider(self, clinic_id: uuid.UUID, provider_id: uuid.UUID) -> Provider | None:
        p = self.store.providers.get(provider_id)
        if p is None or p.clinic_id != clinic_id:
            return None
        q = copy.deepcopy(p)
        q.time_off.sort(key=lambda t: t.start)
        return q

    async def list_providers(
        self, clinic_id: uuid.UUID, show_archived: bool, after: tuple[str, ...] | None, limit: int
    ) -> list[Provider]:
        rows = sorted(
            (
                p
                for p in self.store.providers.values()
                if p.clinic_id == clinic_id and (show_archived or not p.archived)
            ),
            key=lambda p: (p.display_name, str(p.id)),
        )
        return [copy.deepcopy(p) for p in rows if _after((p.display_name, str(p.id)), after)][:limit]

    async def resource(self, clinic_id: uuid.UUID, resource_id: uuid.UUID) -> Resource | None:
        r = self.store.resources.get(resource_id)
        return copy.deepcopy(r) if r is not None and r.clinic_id == clinic_id else None

    async def list_resources(
        self, clinic_id: uuid.UUID, show_archived: bool, after: tuple[str, ...] | None, limit: int
    ) -> list[Resource]:
        rows = sorted(
            (
                r
                for r in self.store.resources.values()
                if r.clinic_id == clinic_id and (show_archived or not r.archived)
            ),
            key=lambda r: (r.resource_type, r.display_name, str(r.id)),
        )
        return [
            copy.deepcopy(r)
            for r in rows
            if after is None or (r.resource_type, r.display_name, str(r.id)) > tuple(after)
        ][:limit]

    async def upcoming_bookings_using(
        self, clinic_id: uuid.UUID, subject_id: uuid.UUID, now: datetime
    ) -> list[Booking]:
        rows = [
            b
            for b in self.store.bookings.values()
            if b.clinic_id == clinic_id
            and b.state == BookingState.CONFIRMED
            and b.start > now
            and (b.provider_id == subject_id or subject_id in b.resource_ids)
        ]
        return [copy.deepcopy(b) for b in sorted(rows, key=lambda b: (b.start, str(b.id)))]

    async def add_provider(self, p: Provider, request_id: uuid.UUID | None = None) -> uuid.UUID:
        if request_id is not None and request_id in self.store.schedule_requests:
            return self.store.schedule_requests[request_id]
        p.seq = 1 + max(
            (q.seq for q in self.store.providers.values() if q.clinic_id == p.clinic_id), default=0
        )
        self.store.providers[p.id] = replace(copy.deepcopy(p), time_off=[])
        if request_id is not None:
            self.store.schedule_requests[request_id] = p.id
        return p.id

    async def save_provider(self, p: Provider, *, archive_at: datetime | None = None) -> None:
        stored = self.store.providers[p.id]
        stored.display_name, stored.user_id = p.display_name, p.user_id
        stored.weekly_hours = copy.deepcopy(p.weekly_hours)
        stored.archived = stored.archived or archive_at is not None
        stored.version += 1
        p.version += 1

    async def add_time_off(self, t: TimeOff) -> bool:
        stored = self.store.providers[t.provider_id]
        if any(o.start < t.end and t.start < o.end for o in stored.time_off):
            return False
        stored.time_off.append(t)
        return True

    async def delete_time_off(self, provider_id: uuid.UUID, time_off_id: uuid.UUID) -> bool:
        stored = self.store.providers.get(provider_id)
        if stored is None:
            return False
        before = len(stored.time_off)
        stored.time_off = [t for t in stored.time_off if t.id != time_off_id]
        return len(stored.time_off) < before

    async def add_resource(self, r: Resource, request_id: uuid.UUID | None = None) -> uuid.UUID:
        if request_id is not None and request_id in self.store.schedule_requests:
            return self.store.schedule_requests[request_id]
        r.seq = 1 + max(
            (q.seq for q in self.store.resources.values() if q.clinic_id == r.clinic_id), default=0
        )
        self.store.resources[r.id] = copy.deepcopy(r)
        if request_id is not None:
            self.store.schedule_requests[request_id] = r.id
        return r.id

    async def save_resource(self, r: Resource, *, archive_at: datetime | None = None) -> None:
        stored = self.store.resources[r.id]
        stored.display_name, stored.species = r.display_name, tuple(r.species)
        stored.archived = stored.archived or archive_at is not None
        stored.version += 1
        r.version += 1

    async def set_service_requirements(
        self,
        service_id: uuid.UUID,
        clinic_id: uuid.UUID,
        provider_ids: tuple[uuid.UUID, ...],
        needs: tuple[ServiceNeed, ...],
    ) -> None:
        stored = self.store.services[service_id]
        stored.provider_ids = tuple(sorted(provider_ids, key=str))
        stored.needs = tuple(sorted(needs, key=lambda n: n.resource_type))

    def _live(self, r: Reservation, now: datetime) -> bool:
        return r.state == ReservationState.CONFIRMED or (
            r.state == ReservationState.HELD and r.expires_at > now
        )

    async def live_claims(
        self,
        clinic_id: uuid.UUID,
        pet_id: uuid.UUID | None,
        start: datetime,
        end: datetime,
        now: datetime,
        subjects: list[uuid.UUID] | None = None,
    ) -> list[Claim]:
        out = []
        for r in self.store.reservations.values():
            if not self._live(r, now):
                continue
            for c in _claims(r):
                if not (c.start < end and start < c.end):
                    continue
                here = r.clinic_id == clinic_id and (subjects is None or c.subject_id in subjects)
                if here or (c.kind == ClaimKind.PET and c.subject_id == pet_id and r.clinic_id != clinic_id):
                    out.append(c)
        return out

    async def expire_lapsed_around(
        self, clinic_id: uuid.UUID, pet_id: uuid.UUID, start: datetime, end: datetime, now: datetime
    ) -> int:
        n = 0
        for r in self.store.reservations.values():
            if r.state != ReservationState.HELD or r.expires_at > now:
                continue
            if any(
                c.start < end
                and start - timedelta(minutes=240) < c.end
                and (r.clinic_id == clinic_id or (c.kind == ClaimKind.PET and c.subject_id == pet_id))
                for c in _claims(r)
            ):
                r.state = ReservationState.EXPIRED
                n += 1
        return n

    async def prepare_hold(
        self,
        clinic_id: uuid.UUID,
        pet_id: uuid.UUID,
        start: datetime,
        end: datetime,
        lo: datetime,
        hi: datetime,
        now: datetime,
        subjects: list[uuid.UUID],
    ) -> tuple[int, uuid.UUID | None, str | None, list[Claim]]:
        await self.expire_lapsed_around(clinic_id, pet_id, start, end, now)
        pet = self.store.pets.get(pet_id)
        claims = await self.live_claims(clinic_id, pet_id, lo, hi, now, subjects)
        return (
            self.store.catalog_version,
            pet.owner_user_id if pet else None,
            pet.species if pet else None,
            claims,
        )

    async def insert_hold(self, res: Reservation, claims: list[Claim]) -> str | None:
        if any(
            r.owner_user_id == res.owner_user_id and r.request_id == res.request_id
            for r in self.store.reservations.values()
        ):
            return "request"
        kind = self._claim_conflict(res)
        if kind is not None:
            return kind
        if self._excludes(res, res.unit, res.start, res.end):
            return "provider" if res.provider_id is not None else "resource"
        self.store.reservations[res.lock_id] = copy.deepcopy(res)
        return None

    async def hold_scheduled(
        self, res: Reservation, options: HoldOptions, catalog_version: int
    ) -> ScheduledAttempt:
        if any(
            r.owner_user_id == res.owner_user_id and r.request_id == res.request_id
            for r in self.store.reservations.values()
        ):
            return ScheduledAttempt(False, earlier=True)
        pet = self.store.pets.get(res.pet_id)
        if (
            pet is None
            or pet.owner_user_id != res.owner_user_id
            or self.store.catalog_version != catalog_version
            or (options.species_allowed and pet.species not in options.species_allowed)
        ):
            return ScheduledAttempt(False)
        until = res.claim_end or res.end
        lo, hi = min(options.day_start, res.start), max(options.day_end, until)
        busy = Busy(await self.live_claims(res.clinic_id, res.pet_id, lo, hi, res.created_at))
        chosen = choose_from(options, busy, res.start, until, pet.species)
        if chosen is None or not busy.free(res.pet_id, res.start, until):
            return ScheduledAttempt(False)
        provider, items = chosen
        held = replace(
            copy.deepcopy(res),
            unit=hold_unit(provider, items),
            provider_id=provider.id if provider else None,
            assignment=options.assignment.value if options.assignment and provider else None,
            resource_ids=tuple(i.id for i in items),
        )
        if self._claim_conflict(held) is not None or self._excludes(held, held.unit, held.start, held.end):
            return ScheduledAttempt(False, raced=True)  # a lapsed hold not expired yet is in the way
        self.store.reservations[held.lock_id] = held
        return ScheduledAttempt(True, False, held.unit, held.provider_id, held.resource_ids)

    async def move_claimed(self, lock_id: uuid.UUID, start: datetime, end: datetime, now: datetime) -> bool:
        r = self.store.reservations[lock_id]
        moved = self._moved(r, start, end)
        if self._claim_conflict(moved) is not None or self._excludes(moved, r.unit, start, end):
            return False
        r.start, r.end, r.claim_end = start, end, moved.claim_end
        return True

    async def reassign_claims(
        self,
        lock_id: uuid.UUID,
        start: datetime,
        end: datetime,
        unit: int,
        provider_id: uuid.UUID | None,
        resource_ids: tuple[uuid.UUID, ...],
        claims: list[Claim],
        now: datetime,
    ) -> str | None:
        r = self.store.reservations.get(lock_id)
        if r is None or r.state not in ACTIVE_STATES:
            raise LookupError(lock_id)
        until = max((c.end for c in claims), default=end)
        moved = replace(
            copy.deepcopy(r),
            start=start,
            end=end,
            claim_end=until,
            unit=unit,
            provider_id=provider_id,
            resource_ids=tuple(resource_ids),
        )
        kind = self._claim_conflict(moved)
        if kind is None and self._excludes(moved, unit, start, end):
            kind = "provider" if provider_id is not None else "resource"
        if kind is not None:
            return "provider" if kind == "unit" and provider_id is not None else kind
        self.store.reservations[lock_id] = moved
        return None

    # -- bookings
    async def confirm_booking(self, booking: Booking, event: OutboxEvent) -> None:
        assert all(b.lock_id != booking.lock_id for b in self.store.bookings.values()), (
            "bookings.lock_id is unique"
        )
        res = self.store.reservations[booking.lock_id]
        res.state, res.payment_id = ReservationState.CONFIRMED, booking.payment_id
        self.store.bookings[booking.id] = copy.deepcopy(booking)
        await self.add_outbox(event)

    async def booking(self, booking_id: uuid.UUID, *, for_update: bool = False) -> Booking | None:
        return copy.deepcopy(self.store.bookings.get(booking_id))

    async def booking_by_lock(self, lock_id: uuid.UUID) -> Booking | None:
        return copy.deepcopy(next((b for b in self.store.bookings.values() if b.lock_id == lock_id), None))

    async def list_bookings(
        self,
        *,
        owner: uuid.UUID | None,
        clinic: uuid.UUID | None,
        start_from: datetime | None,
        after: tuple[str, ...] | None,
        limit: int,
    ) -> list[Booking]:
        rows = sorted(self.store.bookings.values(), key=lambda b: (b.start.isoformat(), str(b.id)))
        return [
            copy.deepcopy(b)
            for b in rows
            if (owner is None or b.owner_user_id == owner)
            and (clinic is None or b.clinic_id == clinic)
            and (start_from is None or b.start >= start_from)
            and _after((b.start.isoformat(), str(b.id)), after)
        ][:limit]

    async def add_outbox(self, event: OutboxEvent) -> None:
        self.store.outbox.append(event)

    # -- an owner across the tables
    async def event_processed(self, event_id: uuid.UUID) -> bool:
        return event_id in self.store.processed

    async def record_processed(self, event_id: uuid.UUID, topic: str, at: datetime) -> bool:
        if event_id in self.store.processed:
            return False
        self.store.processed[event_id] = topic
        return True

    async def owner_future_bookings(self, owner: uuid.UUID, now: datetime) -> list[uuid.UUID]:
        rows = sorted(
            (b for b in self.store.bookings.values() if b.owner_user_id == owner and b.state == "CONFIRMED"),
            key=lambda b: (b.start, str(b.id)),
        )
        return [b.id for b in rows if b.start > now]

    async def owner_held_reservations(self, owner: uuid.UUID) -> list[uuid.UUID]:
        return [
            r.lock_id
            for r in self.store.reservations.values()
            if r.owner_user_id == owner and r.state == ReservationState.HELD
        ]

    def _owner_keys(self, owner: uuid.UUID) -> set[str]:
        return {str(b.id) for b in self.store.bookings.values() if b.owner_user_id == owner}

    async def owner_unsent_events(self, owner: uuid.UUID) -> int:
        keys = self._owner_keys(owner)
        return sum(1 for e in self.store.outbox if e.key in keys and e.event_id not in self.store.sent)

    async def erase_owner(self, owner: uuid.UUID, at: datetime) -> None:
        for p in self.store.pets.values():
            if p.owner_user_id == owner:
                p.name, p.breed, p.birth_date, p.weight_grams, p.notes = "", None, None, None, ""
                p.archived_at, p.version = p.archived_at or at, p.version + 1
        for r in self.store.reservations.values():
            if r.owner_user_id == owner:
                r.owner_email, r.owner_name = "", ""
        for b in self.store.bookings.values():
            if b.owner_user_id == owner:
                b.cancel_reason = ""
        keys = self._owner_keys(owner)
        self.store.outbox = [
            e for e in self.store.outbox if not (e.key in keys and e.event_id in self.store.sent)
        ]

    async def owner_export(self, owner: uuid.UUID) -> dict[str, list[dict[str, Any]]]:
        def value(v: Any) -> Any:
            if isinstance(v, uuid.UUID):
                return str(v)
            return v.isoformat() if isinstance(v, datetime | date) else v

        def row(obj: Any) -> dict[str, Any]:
            return {
                k: value(v)
                for k, v in vars(obj).items()
                if isinstance(v, str | int | float | bool | uuid.UUID | datetime | date) or v is None
            }

        return {
            "pets": [row(p) for p in self.store.pets.values() if p.owner_user_id == owner],
            "reservations": [row(r) for r in self.store.reservations.values() if r.owner_user_id == owner],
            "bookings": [row(b) for b in self.store.bookings.values() if b.owner_user_id == owner],
        }

    # -- lifecycle
    async def save_booking_change(self, b: Booking, *, next_refund_at: datetime | None = None) -> None:
        stored = self.store.bookings[b.id]
        for name in LIFECYCLE_FIELDS:  # the refund's bookkeeping is record_refund's and the claim's
            setattr(stored, name, copy.deepcopy(getattr(b, name)))
        if next_refund_at is not None:
            self.store.refund_due[b.id] = next_refund_at

    async def lifecycle_request(self, request_id: uuid.UUID) -> tuple[uuid.UUID, str, str] | None:
        return self.store.requests.get(request_id)

    async def add_lifecycle_request(
        self, request_id: uuid.UUID, booking_id: uuid.UUID, kind: str, fingerprint: str, now: datetime
    ) -> None:
        if request_id in self.store.requests:
            raise DuplicateRequest
        self.store.requests[request_id] = (booking_id, kind, fingerprint)

    async def claim_due_refunds(self, now: datetime, lease_until: datetime, limit: int = 50) -> list[Booking]:
        due = sorted(
            (
                b
                for b in self.store.bookings.values()
                if b.refund_state in OPEN_REFUND_STATES and (self.store.refund_due.get(b.id) or now) <= now
            ),
            key=lambda b: (
                self.store.refund_due.get(b.id) is not None,
                self.store.refund_due.get(b.id) or now,
            ),
        )[:limit]  # never scheduled first, then by when they are due
        for b in due:
            self.store.refund_due[b.id] = lease_until
            b.refund_attempts += 1
        return [copy.deepcopy(b) for b in due]

    async def record_refund(
        self,
        booking_id: uuid.UUID,
        state: RefundState,
        provider_refund_id: str,
        error: str,
        now: datetime,
        next_at: datetime | None,
        *,
        refund_round: int | None = None,
        was_round: int | None = None,
    ) -> None:
        b = self.store.bookings[booking_id]
        if was_round is not None and b.refund_round != was_round:
            return
        if refund_round is not None:
            b.refund_round = refund_round
        b.refund_error = error[:2000]
        b.refund_state, b.provider_refund_id, b.refund_updated_at = state, provider_refund_id, now
        self.store.refund_due[booking_id] = next_at

    async def open_refunds(self, limit: int) -> list[Booking]:
        rows = [b for b in self.store.bookings.values() if b.refund_state in OPEN_REFUND_STATES]
        return [
            copy.deepcopy(b) for b in sorted(rows, key=lambda b: (b.cancelled_at or b.created_at, str(b.id)))
        ][:limit]


def booking_uow(store: BookingStore | None = None) -> FakeUnitOfWork[BookingStore, FakeBookingRepository]:
    return FakeUnitOfWork(store or BookingStore(), FakeBookingRepository)


class FakeWatch:
    def __init__(self, changes: FakeReservationChanges) -> None:
        self.changes = changes
        self.event = asyncio.Event()
        self.latest: ReservationNews | None = None

    def news(self) -> ReservationNews | None:
        news, self.latest = self.latest, None
        return news

    @property
    def ended(self) -> bool:
        return self.changes.closed

    async def changed(self, timeout: float) -> bool:
        if self.changes.closed:
            return True
        self.changes.waits.append(timeout)
        if self.changes.clock is not None and not self.event.is_set():
            self.changes.clock.now += timedelta(seconds=timeout)  # the wait passes, on the fake clock
            return False
        self.changes.waiting.set()
        await self.event.wait()
        self.event.clear()
        return True


class FakeReservationChanges:
    """The ReservationChanges port over the fake store: a committed change of a reservation's state
    (the fake unit of work's commit, as PostgreSQL delivers the trigger's NOTIFY at commit) wakes the
    watches of that reservation.  With ``clock`` (a fake clock with ``now``), a wait that nothing
    woke passes at once, moving the clock on by its timeout; without, it waits to be woken.  A wake says
    what changed (the reservation's state, payment and booking after the commit, as migration 0013's
    trigger does), unless ``news`` is False (a signal that says nothing: the long-poll reads again)."""

    def __init__(self, clock: Any = None, *, news: bool = True) -> None:
        self.clock = clock
        self.news = news
        self.closed = False
        self.watches: dict[uuid.UUID, list[FakeWatch]] = {}
        self.waiting = asyncio.Event()  # set once a watch waits to be woken
        self.waits: list[float] = []  # every wait's timeout, in order

    @asynccontextmanager
    async def watch(self, lock_id: uuid.UUID) -> AsyncIterator[FakeWatch]:
        w = FakeWatch(self)
        self.watches.setdefault(lock_id, []).append(w)
        try:
            yield w
        finally:
            self.watches[lock_id].remove(w)

    def committed(self, before: dict[str, Any], store: BookingStore) -> None:
        was = before.get("reservations", {})
        for lock_id, res in store.reservations.items():
            old = was.get(lock_id)
            if old is not None and old.state != res.state:
                booking = next((b.id for b in store.bookings.values() if b.lock_id == lock_id), None)
                news = ReservationNews(res.state, res.payment_id, booking) if self.news else None
                for w in self.watches.get(lock_id, ()):
                    w.latest = news
                    w.event.set()

    def close(self) -> None:
        self.closed = True
        for watches in self.watches.values():
            for w in watches:
                w.event.set()


class NoRefunds:
    """A RefundPort for tests that never cancel: any refund attempt is a failure to look at."""

    async def refund(
        self, payment_id: uuid.UUID, amount_minor: int, currency: str, request_id: str, reason: str
    ) -> RefundResult:
        raise AssertionError("no refund expected in this test")


def no_events(*args: object, **kwargs: object) -> bytes:
    return b""


@dataclass
class BookingUseCases:
    """Every use-case family of booking_svc on one fake store, wired as ``server.build`` wires them: a
    unit of work (``uow``) for changes and another (``read``) for the read-only use cases."""

    store: BookingStore
    uow: FakeUnitOfWork[BookingStore, FakeBookingRepository]
    read: FakeUnitOfWork[BookingStore, FakeBookingRepository]
    catalog: CatalogHandlers
    pets: PetHandlers
    reservations: ReservationHandlers
    lifecycle: LifecycleHandlers
    refunds: RefundHandlers
    admin: ClinicAdminHandlers


def booking_use_cases(
    store: BookingStore,
    *,
    clock: Callable[[], datetime] = utcnow,
    hold_ttl: timedelta = timedelta(minutes=10),
    encode_created: EventEncoder = no_events,
    encode_change: ChangeEncoder = no_events,
    refunds: RefundPort | None = None,
    refund_retry_max: timedelta = timedelta(seconds=60),
    traceparent: Callable[[], str] = lambda: "",
    changes: FakeReservationChanges | None = None,
) -> BookingUseCases:
    uow, read = booking_uow(store), booking_uow(store)
    if changes is not None:
        uow.on_commit.append(changes.committed)
        read.on_commit.append(changes.committed)
    catalog = CatalogHandlers(read, clock=clock)
    return BookingUseCases(
        store,
        uow,
        read,
        catalog,
        PetHandlers(uow, read, clock=clock),
        ReservationHandlers(
            uow,
            read,
            catalog,
            encode_created,
            hold_ttl=hold_ttl,
            clock=clock,
            traceparent=traceparent,
            changes=changes,
        ),
        LifecycleHandlers(uow, read, encode_change, clock=clock, traceparent=traceparent),
        RefundHandlers(uow, read, refunds or NoRefunds(), clock=clock, retry_max=refund_retry_max),
        ClinicAdminHandlers(uow, read, clock=clock),
    )


if TYPE_CHECKING:  # mypy checks that the fakes implement the ports (make lint)
    from booking_svc.ports import ReservationChanges, UnitOfWork

    _uow: UnitOfWork = booking_uow()
    _changes: ReservationChanges = FakeReservationChanges()
