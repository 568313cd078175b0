"""Clinic operations (ClinicAdminService): clinics, their weekly hours, closures and day overrides, services,
and the clinic's schedule of bookings."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta

from booking_svc.domain import (
    Booking,
    Clinic,
    ClinicBooking,
    ClinicNotFound,
    Closure,
    HasUpcomingBookings,
    IdempotencyKeyReused,
    Interval,
    Provider,
    ProviderNotFound,
    Resource,
    ResourceNotFound,
    Service,
    ServiceNotBookable,
    ServiceNotFound,
    TimeOff,
    check_etag,
    check_intervals,
    check_locale,
    check_provider_hours,
    check_time_zone,
    outside_schedule,
    uncovered,
)
from booking_svc.ports import BookingRepository, UnitOfWork
from petpro import paging
from petpro.authn import Principal, require_clinic, require_platform_admin
from petpro.clock import utcnow
from petpro.errors import FieldViolation, InvalidArgument

CLINIC_FIELDS = ("name", "address", "phone", "email", "time_zone", "locale")
SERVICE_FIELDS = (
    "name",
    "description",
    "duration_minutes",
    "price",
    "capacity",
    "species_allowed",
    "buffer_after_minutes",
    "min_notice_minutes",
    "max_horizon_days",
    "active",
    "provider_ids",
    "needs",
)
PROVIDER_FIELDS = ("display_name", "user_id", "weekly_hours")
RESOURCE_FIELDS = ("display_name", "species")
MAX_SCHEDULE_RANGE = timedelta(days=31)


def check_mask(paths: list[str], allowed: tuple[str, ...]) -> list[str]:
    """AIP-134: the update_mask's paths, each a field that may be updated."""
    bad = [p for p in paths if p not in allowed]
    if bad:
        raise InvalidArgument.field(
            "update_mask",
            f"cannot update {', '.join(bad)}; updatable: {', '.join(allowed)}",
            "UPDATE_MASK_INVALID",
        )
    if not paths:
        raise InvalidArgument.field("update_mask", "names no field to update", "UPDATE_MASK_EMPTY")
    return paths


@dataclass(frozen=True)
class ClinicProfile:
    """What a create or update of a clinic gives (the servicer maps the proto to it)."""

    name: str = ""
    time_zone: str = ""
    address: str = ""
    phone: str = ""
    email: str = ""
    locale: str = ""  # BCP 47; "" = unknown


@dataclass(frozen=True)
class WeeklyHours:
    """The request's weekly hours: (field path, weekday key, interval) each."""

    entries: tuple[tuple[str, str, Interval], ...]

    def check(self) -> dict[str, list[Interval]]:
        by_day: dict[str, list[tuple[str, Interval]]] = {}
        for path, day, iv in self.entries:
            by_day.setdefault(day, []).append((path, iv))
        violations = [v for ivs in by_day.values() for v in check_intervals(ivs)]
        if violations:
            raise InvalidArgument(
                "; ".join(f"{v.field}: {v.description}" for v in violations), violations=violations
            )
        return {
            day: sorted((iv for _, iv in ivs), key=lambda iv: iv.start_minutes) for day, ivs in by_day.items()
        }


def _day(value: str, field_path: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise InvalidArgument.field(field_path, "is not a calendar date", "DATE_INVALID") from None


class ClinicAdminHandlers:
    """Catalog and calendar changes.  Every change runs in one transaction that also bumps the catalog
    version (:meth:`BookingRepository.bump_catalog`), so no cached read offers what it removed.  The
    membership check comes first, with the principal the servicer authenticated."""

    def __init__(self, uow: UnitOfWork, read: UnitOfWork, *, clock: Callable[[], datetime] = utcnow) -> None:
        self.uow = uow
        self.read = read
        self.clock = clock

    async def _clinic_locked(self, repo: BookingRepository, clinic_id: uuid.UUID) -> Clinic:
        clinic = await repo.clinic(clinic_id, for_update=True)
        if clinic is None:
            raise ClinicNotFound("clinic not found")
        return clinic

    async def _affected(self, repo: BookingRepository, clinic: Clinic) -> list[Booking]:
        """Upcoming confirmed bookings that the clinic's calendar (as changed) no longer covers."""
        return [
            b
            for b in await repo.upcoming_bookings(clinic.id, self.clock())
            if outside_schedule(clinic, b.start, b.end)
        ]

    # -- clinics -----------------------------------------------------------------------------------
    async def create_clinic(
        self,
        caller: Principal,
        profile: ClinicProfile,
        hours: WeeklyHours,
        request_id: uuid.UUID | None = None,
    ) -> Clinic:
        require_platform_admin(caller)
        violations = []
        if not profile.name.strip():
            violations.append(FieldViolation("clinic.name", "is required", "REQUIRED"))
        if violations:
            raise InvalidArgument("clinic.name: is required", violations=violations)
        check_time_zone(profile.time_zone)
        locale = check_locale(profile.locale)
        clinic = Clinic(
            uuid.uuid4(),
            profile.name.strip(),
            profile.time_zone,
            hours.check(),
            profile.address.strip(),
            profile.phone.strip(),
            profile.email.strip().lower(),
            locale=locale,
        )
        async with self.uow() as repo:
            stored = await repo.add_clinic(clinic, request_id)
            if stored != clinic.id:  # a retry (AIP-155): the first answer
                first = await repo.clinic(stored)
                assert first is not None
                return first
            await repo.bump_catalog()
        return clinic

    async def update_clinic(
        self, caller: Principal, clinic_id: uuid.UUID, profile: ClinicProfile, paths: list[str], etag: str
    ) -> Clinic:
        require_clinic(caller, str(clinic_id), admin=True)
        check_mask(paths, CLINIC_FIELDS)
        if "time_zone" in paths:
            check_time_zone(profile.time_zone)
        locale = check_locale(profile.locale) if "locale" in paths else ""
        if "name" in paths and not profile.name.strip():
            raise InvalidArgument.field("clinic.name", "is required", "REQUIRED")
        async with self.uow() as repo:
            clinic = await self._clinic_locked(repo, clinic_id)
            check_etag(clinic.etag, etag)
            for path in paths:
                value = getattr(profile, path).strip()
                setattr(clinic, path, {"email": value.lower(), "locale": locale}.get(path, value))
            await repo.save_clinic(clinic)
            await repo.bump_catalog()
        return clinic

    async def set_opening_hours(
        self, caller: Principal, clinic_id: uuid.UUID, hours: WeeklyHours, etag: str
    ) -> tuple[Clinic, list[Booking]]:
        require_clinic(caller, str(clinic_id), admin=True)
        weekly = hours.check()
        async with self.uow() as repo:
            clinic = await self._clinic_locked(repo, clinic_id)
            check_etag(clinic.etag, etag)
            clinic.opening_hours = weekly
            await repo.save_clinic(clinic)
            await repo.bump_catalog()
            return clinic, await self._affected(repo, clinic)

    async def create_closure(
        self, caller: Principal, clinic_id: uuid.UUID, start: str, end: str, reason: str
    ) -> tuple[Closure, list[Booking]]:
        require_clinic(caller, str(clinic_id), admin=True)
        first, last = _day(start, "closure.start_date"), _day(end, "closure.end_date")
        if last < first:
            raise InvalidArgument.field(
                "closure.end_date", "must not be before start_date", "CLOSURE_END_BEFORE_START"
            )
        if (last - first).days > 366:
            raise InvalidArgument.field(
                "closure.end_date", "a closure lasts at most a year", "CLOSURE_TOO_LONG"
            )
        closure = Closure(uuid.uuid4(), clinic_id, first, last, reason.strip())
        async with self.uow() as repo:
            clinic = await self._clinic_locked(repo, clinic_id)
            await repo.add_closure(closure)
            await repo.bump_catalog()
            clinic.closures.append(closure)
            return closure, await self._affected(repo, clinic)

    async def list_closures(
        self, caller: Principal, clinic_id: uuid.UUID, size: int, token: str
    ) -> tuple[list[Closure], str]:
        require_clinic(caller, str(clinic_id))
        limit = paging.page_size(size)
        async with self.read() as repo:
            rows = await repo.list_closures(clinic_id, paging.decode(token), limit)
        return rows, paging.next_token(rows, limit, lambda c: (c.start_date.isoformat(), str(c.id)))

    async def delete_closure(self, caller: Principal, clinic_id: uuid.UUID, closure_id: uuid.UUID) -> None:
        require_clinic(caller, str(clinic_id), admin=True)
        async with self.uow() as repo:
            if await repo.delete_closure(clinic_id, closure_id):
                await repo.bump_catalog()

    async def set_day_override(
        self, caller: Principal, clinic_id: uuid.UUID, day: str, intervals: list[tuple[str, Interval]]
    ) -> tuple[date, list[Interval], list[Booking]]:
        require_clinic(caller, str(clinic_id), admin=True)
        local_day = _day(day, "override.date")
        violations = check_intervals(intervals)
        if violations:
            raise InvalidArgument(
                "; ".join(f"{v.field}: {v.description}" for v in violations), violations=violations
            )
        ivs = sorted((iv for _, iv in intervals), key=lambda iv: iv.start_minutes)
        async with self.uow() as repo:
            clinic = await self._clinic_locked(repo, clinic_id)
            await repo.put_override(clinic_id, local_day, ivs)
            await repo.bump_catalog()
            clinic.overrides[local_day] = ivs
            return local_day, ivs, await self._affected(repo, clinic)

    async def delete_day_override(self, caller: Principal, clinic_id: uuid.UUID, day: str) -> None:
        require_clinic(caller, str(clinic_id), admin=True)
        local_day = _day(day, "date")
        async with self.uow() as repo:
            if await repo.delete_override(clinic_id, local_day):
                await repo.bump_catalog()

    # -- services ----------------------------------------------------------------------------------
    async def create_service(
        self, caller: Principal, clinic_id: uuid.UUID, draft: Service, request_id: uuid.UUID | None = None
    ) -> Service:
        require_clinic(caller, str(clinic_id), admin=True)
        svc = replace(
            draft,
            id=uuid.uuid4(),
            clinic_id=clinic_id,
            name=draft.name.strip(),
            description=draft.description.strip(),
            archived=False,
            version=1,
        )
        svc.check_rules()
        async with self.uow() as repo:
            await self._clinic_locked(repo, clinic_id)
            stored = await repo.add_service(svc, request_id)
            if stored != svc.id:  # a retry (AIP-155): the first answer, if it is this clinic's
                first = await repo.service(stored)
                if first is None or first.clinic_id != clinic_id:
                    raise IdempotencyKeyReused("this request_id was used for another clinic's service")
                return first
            await repo.bump_catalog()
        return svc

    async def _service_locked(
        self, repo: BookingRepository, caller: Principal, service_id: uuid.UUID
    ) -> Service:
        svc = await repo.service(service_id, for_update=True)
        if svc is None or caller.clinic_role(str(svc.clinic_id)) is None:
            raise ServiceNotFound("service not found")  # another clinic's service is not revealed
        require_clinic(caller, str(svc.clinic_id), admin=True)
        return svc

    async def update_service(
        self, caller: Principal, service_id: uuid.UUID, changes: Service, paths: list[str], etag: str
    ) -> Service:
        check_mask(paths, SERVICE_FIELDS)
        async with self.uow() as repo:
            svc = await self._service_locked(repo, caller, service_id)
            check_etag(svc.etag, etag)
            if svc.archived:
                raise ServiceNotBookable("an archived service cannot be changed")
            for path in paths:
                if path == "price":
                    svc.price_minor, svc.currency = changes.price_minor, changes.currency
                else:
                    setattr(svc, path, getattr(changes, path))
            svc.name, svc.description = svc.name.strip(), svc.description.strip()
            svc.check_rules()
            if "provider_ids" in paths or "needs" in paths:
                await self._check_requirements(repo, svc)
            # existing bookings keep their own time range and amount: nothing else to touch
            await repo.save_service(svc)
            if "provider_ids" in paths or "needs" in paths:
                await repo.set_service_requirements(svc.id, svc.clinic_id, svc.provider_ids, svc.needs)
            await repo.bump_catalog()
        return svc

    async def _check_requirements(self, repo: BookingRepository, svc: Service) -> None:
        """Each provider is one of the clinic's, not archived; each needed type is the clinic's, with
        enough items; each type named once.  All violations at once, nothing written."""
        sched = await repo.clinic_schedule(svc.clinic_id, self.clock())
        violations = []
        for i, pid in enumerate(svc.provider_ids):
            p = sched.providers.get(pid)
            if p is None:
                violations.append(
                    FieldViolation(
                        f"service.provider_ids[{i}]", "is no provider of this clinic", "PROVIDER_NOT_FOUND"
                    )
                )
            elif p.archived:
                violations.append(
                    FieldViolation(f"service.provider_ids[{i}]", "is archived", "PROVIDER_ARCHIVED")
                )
        types = sched.types()
        seen: set[str] = set()
        for i, need in enumerate(svc.needs):
            path = f"service.needs[{i}]"
            if need.resource_type in seen:
                violations.append(FieldViolation(f"{path}.resource_type", "is named twice", "NEED_DUPLICATE"))
            seen.add(need.resource_type)
            have = types.get(need.resource_type, 0)
            if have == 0:
                violations.append(
                    FieldViolation(
                        f"{path}.resource_type",
                        "the clinic has no resource of this type",
                        "RESOURCE_TYPE_UNKNOWN",
                    )
                )
            elif have < need.quantity:
                violations.append(
                    FieldViolation(
                        f"{path}.quantity", f"the clinic has only {have} of this type", "NOT_ENOUGH_RESOURCES"
                    )
                )
        if violations:
            raise InvalidArgument(
                "; ".join(f"{v.field}: {v.description}" for v in violations), violations=violations
            )

    async def archive_service(self, caller: Principal, service_id: uuid.UUID, etag: str) -> Service:
        async with self.uow() as repo:
            svc = await self._service_locked(repo, caller, service_id)
            check_etag(svc.etag, etag)
            if not svc.archived:
                svc.archived, svc.active = True, False
                await repo.save_service(svc, archive_at=self.clock())
                await repo.bump_catalog()
        return svc

    # -- providers and resources (docs/design/scheduling.md) ---------------------------------------
    async def _provider_locked(
        self, repo: BookingRepository, clinic_id: uuid.UUID, provider_id: uuid.UUID
    ) -> tuple[Clinic, Provider]:
        clinic = await self._clinic_locked(repo, clinic_id)
        p = await repo.provider(clinic_id, provider_id)
        if p is None:
            raise ProviderNotFound("provider not found", metadata={"field": "provider_id"})
        return clinic, p

    async def _uncovered(self, repo: BookingRepository, clinic: Clinic, provider: Provider) -> list[Booking]:
        """Upcoming bookings of the provider their hours and time off (as changed) no longer cover."""
        return [
            b
            for b in await repo.upcoming_bookings_using(clinic.id, provider.id, self.clock())
            if b.provider_id == provider.id and uncovered(provider, clinic, b.start, b.end)
        ]

    async def create_provider(
        self,
        caller: Principal,
        clinic_id: uuid.UUID,
        display_name: str,
        user_id: uuid.UUID | None,
        hours: WeeklyHours,
        request_id: uuid.UUID | None = None,
    ) -> Provider:
        require_clinic(caller, str(clinic_id), admin=True)
        if not display_name.strip():
            raise InvalidArgument.field("provider.display_name", "is required", "REQUIRED")
        async with self.uow() as repo:
            clinic = await self._clinic_locked(repo, clinic_id)
            weekly, violations = check_provider_hours(clinic, hours.entries)
            if violations:
                raise InvalidArgument(
                    "; ".join(f"{v.field}: {v.description}" for v in violations), violations=violations
                )
            p = Provider(uuid.uuid4(), clinic_id, display_name.strip(), weekly, user_id)
            stored = await repo.add_provider(p, request_id)
            if stored != p.id:  # a retry (AIP-155): the first answer, if it is this clinic's
                first = await repo.provider(clinic_id, stored)
                if first is None:
                    raise IdempotencyKeyReused("this request_id was used for another clinic's provider")
                return first
            await repo.bump_catalog()
        return p

    async def update_provider(
        self,
        caller: Principal,
        clinic_id: uuid.UUID,
        provider_id: uuid.UUID,
        display_name: str,
        user_id: uuid.UUID | None,
        hours: WeeklyHours,
        paths: list[str],
        etag: str,
    ) -> tuple[Provider, list[Booking]]:
        require_clinic(caller, str(clinic_id), admin=True)
        check_mask(paths, PROVIDER_FIELDS)
        if "display_name" in paths and not display_name.strip():
            raise InvalidArgument.field("provider.display_name", "is required", "REQUIRED")
        async with self.uow() as repo:
            clinic, p = await self._provider_locked(repo, clinic_id, provider_id)
            check_etag(p.etag, etag)
            if "weekly_hours" in paths:
                weekly, violations = check_provider_hours(clinic, hours.entries)
                if violations:
                    raise InvalidArgument(
                        "; ".join(f"{v.field}: {v.description}" for v in violations), violations=violations
                    )
                p.weekly_hours = weekly
            if "display_name" in paths:
                p.display_name = display_name.strip()
            if "user_id" in paths:
                p.user_id = user_id
            await repo.save_provider(p)
            await repo.bump_catalog()
            return p, await self._uncovered(repo, clinic, p)

    async def list_providers(
        self, caller: Principal, clinic_id: uuid.UUID, show_archived: bool, size: int, token: str
    ) -> tuple[list[Provider], str]:
        require_clinic(caller, str(clinic_id))
        limit = paging.page_size(size)
        async with self.read() as repo:
            rows = await repo.list_providers(clinic_id, show_archived, paging.decode(token), limit)
        return rows, paging.next_token(rows, limit, lambda p: (p.display_name, str(p.id)))

    async def archive_provider(
        self, caller: Principal, clinic_id: uuid.UUID, provider_id: uuid.UUID, etag: str
    ) -> Provider:
        require_clinic(caller, str(clinic_id), admin=True)
        async with self.uow() as repo:
            _, p = await self._provider_locked(repo, clinic_id, provider_id)
            check_etag(p.etag, etag)
            if not p.archived:
                self._refuse_if_booked(
                    await repo.upcoming_bookings_using(clinic_id, p.id, self.clock()), "provider_id"
                )
                p.archived = True
                await repo.save_provider(p, archive_at=self.clock())
                await repo.bump_catalog()
        return p

    @staticmethod
    def _refuse_if_booked(upcoming: list[Booking], field: str) -> None:
        if upcoming:
            raise HasUpcomingBookings(
                f"{len(upcoming)} upcoming booking(s) use it; cancel or move them first",
                violations=[
                    FieldViolation(field, f"booking {b.id} at {b.start.isoformat()}", "HAS_UPCOMING_BOOKING")
                    for b in upcoming[:50]
                ],
                metadata={"booking_ids": ",".join(str(b.id) for b in upcoming[:50])},
            )

    async def create_time_off(
        self,
        caller: Principal,
        clinic_id: uuid.UUID,
        provider_id: uuid.UUID,
        start: datetime,
        end: datetime,
        reason: str,
    ) -> tuple[TimeOff, list[Booking]]:
        require_clinic(caller, str(clinic_id), admin=True)
        if end <= start:
            raise InvalidArgument.field("time_off.end_time", "must be after start_time", "RANGE_EMPTY")
        if end - start > timedelta(days=366):
            raise InvalidArgument.field(
                "time_off.end_time", "time off lasts at most a year", "RANGE_TOO_LONG"
            )
        t = TimeOff(uuid.uuid4(), provider_id, start, end, reason.strip())
        async with self.uow() as repo:
            clinic, p = await self._provider_locked(repo, clinic_id, provider_id)
            if not await repo.add_time_off(t):
                raise InvalidArgument.field(
                    "time_off", "overlaps another time off of this provider", "TIME_OFF_OVERLAPS"
                )
            await repo.bump_catalog()
            p.time_off.append(t)
            return t, await self._uncovered(repo, clinic, p)

    async def delete_time_off(
        self, caller: Principal, clinic_id: uuid.UUID, provider_id: uuid.UUID, time_off_id: uuid.UUID
    ) -> None:
        require_clinic(caller, str(clinic_id), admin=True)
        async with self.uow() as repo:
            await self._provider_locked(repo, clinic_id, provider_id)
            if await repo.delete_time_off(provider_id, time_off_id):
                await repo.bump_catalog()

    async def _resource_locked(
        self, repo: BookingRepository, clinic_id: uuid.UUID, resource_id: uuid.UUID
    ) -> Resource:
        await self._clinic_locked(repo, clinic_id)
        r = await repo.resource(clinic_id, resource_id)
        if r is None:
            raise ResourceNotFound("resource not found", metadata={"field": "resource_id"})
        return r

    async def create_resource(
        self,
        caller: Principal,
        clinic_id: uuid.UUID,
        display_name: str,
        resource_type: str,
        species: tuple[str, ...],
        request_id: uuid.UUID | None = None,
    ) -> Resource:
        require_clinic(caller, str(clinic_id), admin=True)
        violations = []
        if not display_name.strip():
            violations.append(FieldViolation("resource.display_name", "is required", "REQUIRED"))
        if not resource_type.strip():
            violations.append(FieldViolation("resource.resource_type", "is required", "REQUIRED"))
        if violations:
            raise InvalidArgument(
                "; ".join(f"{v.field}: {v.description}" for v in violations), violations=violations
            )
        r = Resource(uuid.uuid4(), clinic_id, display_name.strip(), resource_type.strip().lower(), species)
        async with self.uow() as repo:
            await self._clinic_locked(repo, clinic_id)
            stored = await repo.add_resource(r, request_id)
            if stored != r.id:
                first = await repo.resource(clinic_id, stored)
                if first is None:
                    raise IdempotencyKeyReused("this request_id was used for another clinic's resource")
                return first
            await repo.bump_catalog()
        return r

    async def update_resource(
        self,
        caller: Principal,
        clinic_id: uuid.UUID,
        resource_id: uuid.UUID,
        display_name: str,
        species: tuple[str, ...],
        paths: list[str],
        etag: str,
    ) -> Resource:
        require_clinic(caller, str(clinic_id), admin=True)
        check_mask(paths, RESOURCE_FIELDS)
        if "display_name" in paths and not display_name.strip():
            raise InvalidArgument.field("resource.display_name", "is required", "REQUIRED")
        async with self.uow() as repo:
            r = await self._resource_locked(repo, clinic_id, resource_id)
            check_etag(r.etag, etag)
            if "display_name" in paths:
                r.display_name = display_name.strip()
            if "species" in paths:
                r.species = species
            await repo.save_resource(r)
            await repo.bump_catalog()
        return r

    async def list_resources(
        self, caller: Principal, clinic_id: uuid.UUID, show_archived: bool, size: int, token: str
    ) -> tuple[list[Resource], str]:
        require_clinic(caller, str(clinic_id))
        limit = paging.page_size(size)
        async with self.read() as repo:
            rows = await repo.list_resources(clinic_id, show_archived, paging.decode(token), limit)
        return rows, paging.next_token(rows, limit, lambda r: (r.resource_type, r.display_name, str(r.id)))

    async def archive_resource(
        self, caller: Principal, clinic_id: uuid.UUID, resource_id: uuid.UUID, etag: str
    ) -> Resource:
        require_clinic(caller, str(clinic_id), admin=True)
        async with self.uow() as repo:
            r = await self._resource_locked(repo, clinic_id, resource_id)
            check_etag(r.etag, etag)
            if not r.archived:
                self._refuse_if_booked(
                    await repo.upcoming_bookings_using(clinic_id, r.id, self.clock()), "resource_id"
                )
                r.archived = True
                await repo.save_resource(r, archive_at=self.clock())
                await repo.bump_catalog()
        return r

    # -- the schedule ------------------------------------------------------------------------------
    async def list_clinic_bookings(
        self,
        caller: Principal,
        clinic_id: uuid.UUID,
        start: datetime,
        end: datetime,
        states: list[str],
        size: int,
        token: str,
    ) -> tuple[list[ClinicBooking], str]:
        require_clinic(caller, str(clinic_id))
        if end <= start:
            raise InvalidArgument.field("end_time", "must be after start_time", "RANGE_EMPTY")
        if end - start > MAX_SCHEDULE_RANGE:
            raise InvalidArgument.field("end_time", "at most 31 days after start_time", "RANGE_TOO_LONG")
        limit = paging.page_size(size)
        async with self.read() as repo:
            rows = await repo.list_clinic_bookings(clinic_id, start, end, states, paging.decode(token), limit)
        return rows, paging.next_token(
            rows, limit, lambda r: (r.booking.start.isoformat(), str(r.booking.id))
        )
