"""Catalog reads (ListClinics, GetClinic, ListServices, GetService, GetAvailability) and the catalog memo
the other use cases look services up through.

The catalog changes rarely: reads go through a memo that compares the catalog version (bumped in the
transaction of every change, ClinicAdminService or seed) on every read, so a committed change is seen by
the next read on every replica; no TTL."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime

from booking_svc.domain import Clinic, ClinicNotFound, Service, ServiceNotFound, bookable_window, slot_grid
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
        self, service_id: uuid.UUID, day: str
    ) -> tuple[Service, Clinic, list[AvailabilitySlot]]:
        try:
            local_day = date.fromisoformat(day)
        except ValueError:
            raise InvalidArgument.field("date", "is not a calendar date", "DATE_INVALID") from None
        now = self.clock()
        svc, clinic = await self.get_service(service_id)
        grid = slot_grid(clinic, svc, local_day) if svc.bookable else []
        earliest, latest = bookable_window(svc, now)
        async with self.read() as repo:
            taken = await repo.active_counts(svc.id, grid[0].start, grid[-1].end, now) if grid else []
        out = []
        for g in grid:
            used = sum(1 for s, e in taken if s < g.end and g.start < e)
            open_for_booking = g.start > now and earliest <= g.start <= latest
            remaining = max(svc.capacity - used, 0) if open_for_booking else 0
            out.append(AvailabilitySlot(g.start, g.end, remaining))
        return svc, clinic, out
