"""Catalog reads (ListClinics, GetClinic, ListServices, GetService, GetAvailability) and the catalog memo
the other use cases look services up through.

The catalog changes rarely: reads go through a memo that compares the catalog version (bumped in the
transaction of every change, ClinicAdminService or seed) on every read, so a committed change is seen by
the next read on every replica; no TTL."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from booking_svc.domain import (
    Busy,
    Clinic,
    ClinicNotFound,
    ClinicSchedule,
    Provider,
    Service,
    ServiceNotFound,
    bookable_window,
    claim_end,
    day_view,
    local_day_range,
    month_days,
    month_view,
    scheduled,
    slot_grid,
    subjects_of,
)
from booking_svc.ports import BookingRepository, UnitOfWork
from petpro import paging
from petpro.clock import utcnow
from petpro.errors import InvalidArgument
from petpro.memo import VersionedMemo


@dataclass(frozen=True)
class AvailabilitySlot:
    start: datetime
    end: datetime
    remaining: int
    providers: tuple[Provider, ...] = ()


class CatalogHandlers:
    def __init__(
        self, read: UnitOfWork, *, cache_entries: int = 4096, clock: Callable[[], datetime] = utcnow
    ) -> None:
        self.read = read  # read-only use cases: no transaction needed
        self.memo = VersionedMemo(cache_entries)
        self.clock = clock

    async def version(self, repo: BookingRepository | None = None) -> int:
        """The catalog's version: through ``repo`` when the caller holds a unit of work (never a second
        connection: see petpro.db.Database), else a read of its own."""
        if repo is not None:
            return await repo.catalog_version()
        async with self.read() as own:
            return await own.catalog_version()

    async def _clinic(self, clinic_id: uuid.UUID, version: int | None = None) -> Clinic | None:
        async def load() -> Clinic | None:
            async with self.read() as repo:
                return await repo.clinic(clinic_id)

        if version is None:
            version = await self.version()
        return await self.memo.get(("clinic", clinic_id), version, load)

    def cached_service(self, service_id: uuid.UUID) -> tuple[int, tuple[Service, Clinic]] | None:
        """The service and its clinic as last loaded, with the catalog version they were loaded at,
        unchecked: for a caller whose own statement compares that version."""
        return self.memo.peek(("service", service_id))

    async def get_service(
        self, service_id: uuid.UUID, version: int | None = None, repo: BookingRepository | None = None
    ) -> tuple[Service, Clinic]:
        """The service and its clinic at ``version`` (read first if None); through ``repo`` when the
        caller holds a unit of work."""

        async def load() -> tuple[Service, Clinic] | None:
            if repo is not None:
                return await repo.service_with_clinic(service_id)
            async with self.read() as own:
                return await own.service_with_clinic(service_id)

        if version is None:
            version = await self.version(repo)
        found = await self.memo.get(("service", service_id), version, load)
        if found is None:
            raise ServiceNotFound("service not found")
        return found

    async def schedule(
        self, clinic_id: uuid.UUID, version: int | None = None, repo: BookingRepository | None = None
    ) -> ClinicSchedule:
        """The clinic's providers and resource items at ``version`` (read first if None), memoized like
        the catalog (every change to them bumps the catalog's version)."""

        async def load() -> ClinicSchedule:
            if repo is not None:
                return await repo.clinic_schedule(clinic_id, self.clock())
            async with self.read() as own:
                return await own.clinic_schedule(clinic_id, self.clock())

        if version is None:
            version = await self.version(repo)
        return await self.memo.get(("schedule", clinic_id), version, load)

    async def list_clinics(self, size: int, token: str) -> tuple[list[Clinic], str]:
        limit = paging.page_size(size)
        after = paging.decode(token)

        async def load() -> list[Clinic]:
            async with self.read() as repo:
                return await repo.list_clinics(after, limit)

        rows = await self.memo.get(("clinics", after, limit), await self.version(), load)
        return rows, paging.next_token(rows, limit, lambda c: (c.name, str(c.id)))

    async def get_clinic(self, clinic_id: uuid.UUID) -> Clinic:
        clinic = await self._clinic(clinic_id)
        if clinic is None:
            raise ClinicNotFound("clinic not found")
        return clinic

    async def list_services(self, clinic_id: uuid.UUID, size: int, token: str) -> tuple[list[Service], str]:
        limit = paging.page_size(size)
        after = paging.decode(token)
        version = await self.version()  # one read for both lookups of this request
        if await self._clinic(clinic_id, version) is None:
            raise ClinicNotFound("clinic not found")

        async def load() -> list[Service]:
            async with self.read() as repo:
                return await repo.list_services(clinic_id, after, limit)

        rows = await self.memo.get(("services", clinic_id, after, limit), version, load)
        return rows, paging.next_token(rows, limit, lambda s: (s.name, str(s.id)))

    async def availability(
        self,
        service_id: uuid.UUID,
        day: str,
        *,
        provider_id: uuid.UUID | None = None,
        pet_id: uuid.UUID | None = None,
    ) -> tuple[Service, Clinic, list[AvailabilitySlot]]:
        """The day view: every slot of the day with its free places (and, for a service with
        providers, the free qualified providers in "any available" order)."""
        try:
            local_day = date.fromisoformat(day)
        except ValueError:
            raise InvalidArgument.field("date", "is not a calendar date", "DATE_INVALID") from None
        now = self.clock()
        version = await self.version()
        svc, clinic = await self.get_service(service_id, version)
        if scheduled(svc) or pet_id is not None:
            sched = await self.schedule(clinic.id, version)
            lo, hi = local_day_range(clinic, local_day)
            subjects = subjects_of(svc, sched, pet_id) if scheduled(svc) else ([pet_id] if pet_id else [])
            async with self.read() as repo:
                busy = Busy(
                    await repo.live_claims(clinic.id, pet_id, lo, hi + timedelta(hours=5), now, subjects)
                )
            if scheduled(svc):
                species = await self._species(pet_id)
                views = day_view(
                    clinic,
                    svc,
                    sched,
                    local_day,
                    busy,
                    now,
                    provider_id=provider_id,
                    pet_id=pet_id,
                    species=species,
                )
                return (
                    svc,
                    clinic,
                    [AvailabilitySlot(v.start, v.end, v.remaining, v.providers) for v in views],
                )
        else:
            busy = Busy(())
        grid = slot_grid(clinic, svc, local_day) if svc.bookable else []
        earliest, latest = bookable_window(svc, now)
        async with self.read() as repo:
            taken = await repo.active_counts(svc.id, grid[0].start, grid[-1].end, now) if grid else []
        out = []
        for g in grid:
            used = sum(1 for s, e in taken if s < g.end and g.start < e)
            open_for_booking = g.start > now and earliest <= g.start <= latest
            if pet_id is not None and not busy.free(pet_id, g.start, claim_end(svc, g.end)):
                open_for_booking = False
            remaining = max(svc.capacity - used, 0) if open_for_booking else 0
            out.append(AvailabilitySlot(g.start, g.end, remaining))
        return svc, clinic, out

    async def available_days(
        self,
        service_id: uuid.UUID,
        month: str,
        *,
        provider_id: uuid.UUID | None = None,
        pet_id: uuid.UUID | None = None,
    ) -> tuple[Service, Clinic, list[tuple[date, bool]]]:
        """The month view: per day whether any slot is free, with one read of the month's claims; a day
        stops at its first free slot and closed days are never gridded."""
        try:
            first = date.fromisoformat(f"{month}-01")
        except ValueError:
            raise InvalidArgument.field("month", "is not a month YYYY-MM", "MONTH_INVALID") from None
        now = self.clock()
        version = await self.version()
        svc, clinic = await self.get_service(service_id, version)
        days = month_days(first.year, first.month)
        lo, _ = local_day_range(clinic, days[0])
        _, hi = local_day_range(clinic, days[-1])
        sched = await self.schedule(clinic.id, version) if scheduled(svc) else None
        subjects = subjects_of(svc, sched, pet_id) if sched is not None else ([pet_id] if pet_id else [])
        async with self.read() as repo:
            claims = await repo.live_claims(clinic.id, pet_id, lo, hi + timedelta(hours=5), now, subjects)
            taken = [] if scheduled(svc) else await repo.active_counts(svc.id, lo, hi, now)
        species = await self._species(pet_id) if scheduled(svc) else None
        out = month_view(
            clinic,
            svc,
            sched,
            days,
            Busy(claims),
            now,
            capacity_taken=taken,
            provider_id=provider_id,
            pet_id=pet_id,
            species=species,
        )
        return svc, clinic, out

    async def _species(self, pet_id: uuid.UUID | None) -> str | None:
        if pet_id is None:
            return None
        async with self.read() as repo:
            pet = await repo.pet(pet_id)
        return pet.species if pet else None
