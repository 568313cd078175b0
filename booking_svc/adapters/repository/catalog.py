"""Catalog queries: clinics with their calendar (closures, day overrides), services, the catalog's
version, and the changes ClinicAdminService and the seed make."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Any, cast

from sqlalchemy import CursorResult, delete, func, insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert

from booking_svc.adapters.repository.rows import (
    Queries,
    clinic_from_row,
    hours_json,
    intervals_from_json,
    intervals_json,
    service_from_row,
    service_values,
)
from booking_svc.adapters.tables import (
    catalog_state,
    clinics,
    closures,
    day_overrides,
    resource_types,
    service_needs,
    service_providers,
    services,
)
from booking_svc.domain import Clinic, Closure, Interval, Service, ServiceNeed
from petpro.db import raw_execute

# the catalog cache's version, read before every catalog lookup (ReserveSlot's HOLD reads it itself)
CATALOG_VERSION = "SELECT version FROM catalog_state WHERE id = 1"


class CatalogQueries(Queries):
    async def list_clinics(self, after: tuple[str, ...] | None, limit: int) -> list[Clinic]:
        q = select(clinics).order_by(clinics.c.name, clinics.c.id).limit(limit)
        if after:
            q = q.where(func.row(clinics.c.name, clinics.c.id) > func.row(after[0], uuid.UUID(after[1])))
        return [clinic_from_row(r) for r in (await self.session.execute(q))]

    async def clinic(self, clinic_id: uuid.UUID, *, for_update: bool = False) -> Clinic | None:
        """The clinic with its calendar: closures and day overrides that have not passed yet (two days of
        slack so every time zone's "today" is covered)."""
        q = select(clinics).where(clinics.c.id == clinic_id)
        if for_update:
            q = q.with_for_update()
        r = (await self.session.execute(q)).first()
        if r is None:
            return None
        clinic = clinic_from_row(r)
        since = func.current_date() - 2
        clinic.closures = [
            Closure(c.id, c.clinic_id, c.start_date, c.end_date, c.reason)
            for c in await self.session.execute(
                select(closures)
                .where(closures.c.clinic_id == clinic_id, closures.c.end_date >= since)
                .order_by(closures.c.start_date, closures.c.id)
            )
        ]
        clinic.overrides = {
            o.day: intervals_from_json(o.intervals)
            for o in await self.session.execute(
                select(day_overrides).where(
                    day_overrides.c.clinic_id == clinic_id, day_overrides.c.day >= since
                )
            )
        }
        return clinic

    async def list_services(
        self, clinic_id: uuid.UUID, after: tuple[str, ...] | None, limit: int
    ) -> list[Service]:
        q = (
            select(services)
            .where(services.c.clinic_id == clinic_id, services.c.archived_at.is_(None))
            .order_by(services.c.name, services.c.id)
            .limit(limit)
        )
        if after:
            q = q.where(func.row(services.c.name, services.c.id) > func.row(after[0], uuid.UUID(after[1])))
        return await self._with_requirements([service_from_row(r) for r in (await self.session.execute(q))])

    async def _with_requirements(self, svcs: list[Service]) -> list[Service]:
        """The services with who can perform them and what they need (service_providers, service_needs)."""
        if not svcs:
            return svcs
        ids = [s.id for s in svcs]
        by_id = {s.id: s for s in svcs}
        provs: dict[uuid.UUID, list[uuid.UUID]] = {}
        for r in await self.session.execute(
            select(service_providers)
            .where(service_providers.c.service_id.in_(ids))
            .order_by(service_providers.c.provider_id)
        ):
            provs.setdefault(r.service_id, []).append(r.provider_id)
        needs: dict[uuid.UUID, list[ServiceNeed]] = {}
        for r in await self.session.execute(
            select(service_needs.c.service_id, resource_types.c.name, service_needs.c.quantity)
            .join(resource_types, resource_types.c.id == service_needs.c.type_id)
            .where(service_needs.c.service_id.in_(ids))
            .order_by(resource_types.c.name)
        ):
            needs.setdefault(r.service_id, []).append(ServiceNeed(r.name, r.quantity))
        for sid, svc in by_id.items():
            svc.provider_ids = tuple(provs.get(sid, ()))
            svc.needs = tuple(needs.get(sid, ()))
        return svcs

    async def service_with_clinic(self, service_id: uuid.UUID) -> tuple[Service, Clinic] | None:
        svc = await self.service(service_id)
        if svc is None:
            return None
        clinic = await self.clinic(svc.clinic_id)
        assert clinic is not None  # foreign key
        return svc, clinic

    async def service(self, service_id: uuid.UUID, *, for_update: bool = False) -> Service | None:
        q = select(services).where(services.c.id == service_id)
        if for_update:
            q = q.with_for_update()
        r = (await self.session.execute(q)).first()
        return (await self._with_requirements([service_from_row(r)]))[0] if r else None

    async def catalog_version(self) -> int:
        # read before every catalog lookup (the cache's invalidation): psycopg directly, as the hot
        # statements, since SQLAlchemy's per-statement work was ~1 ms of booking's CPU per lookup
        cur = await raw_execute(self.session, CATALOG_VERSION, {}, operation="SELECT")
        row = await cur.fetchone()
        assert row is not None  # the migration inserts the one row
        return int(row[0])

    async def bump_catalog(self) -> None:
        """In the transaction of every catalog change: caches see the new version on their next read."""
        await self.session.execute(
            update(catalog_state).where(catalog_state.c.id == 1).values(version=catalog_state.c.version + 1)
        )

    async def add_clinic(self, clinic: Clinic, request_id: uuid.UUID | None = None) -> uuid.UUID:
        """Insert; with a ``request_id`` already used, nothing is inserted and the first clinic's id returned."""
        stmt = pg_insert(clinics).values(
            id=clinic.id,
            name=clinic.name,
            time_zone=clinic.time_zone,
            address=clinic.address,
            phone=clinic.phone,
            email=clinic.email,
            locale=clinic.locale,
            opening_hours=hours_json(clinic.opening_hours),
            reminder_offsets_minutes=list(clinic.reminder_offsets_minutes),
            version=clinic.version,
            request_id=request_id,
        )
        if request_id is None:
            await self.session.execute(stmt)
            return clinic.id
        await self.session.execute(stmt.on_conflict_do_nothing(index_elements=["request_id"]))
        return uuid.UUID(
            str(
                (
                    await self.session.execute(select(clinics.c.id).where(clinics.c.request_id == request_id))
                ).scalar_one()
            )
        )

    async def save_clinic(self, clinic: Clinic) -> None:
        """Write profile + weekly hours, version + 1 (the caller holds the row lock)."""
        await self.session.execute(
            update(clinics)
            .where(clinics.c.id == clinic.id)
            .values(
                name=clinic.name,
                time_zone=clinic.time_zone,
                address=clinic.address,
                phone=clinic.phone,
                email=clinic.email,
                locale=clinic.locale,
                opening_hours=hours_json(clinic.opening_hours),
                version=clinics.c.version + 1,
            )
        )
        clinic.version += 1

    async def add_service(self, svc: Service, request_id: uuid.UUID | None = None) -> uuid.UUID:
        """Insert; with a ``request_id`` already used, nothing is inserted and the first service's id returned."""
        stmt = pg_insert(services).values(
            id=svc.id, version=svc.version, request_id=request_id, **service_values(svc)
        )
        if request_id is None:
            await self.session.execute(stmt)
            return svc.id
        await self.session.execute(stmt.on_conflict_do_nothing(index_elements=["request_id"]))
        return uuid.UUID(
            str(
                (
                    await self.session.execute(
                        select(services.c.id).where(services.c.request_id == request_id)
                    )
                ).scalar_one()
            )
        )

    async def save_service(self, svc: Service, *, archive_at: datetime | None = None) -> None:
        values = {**service_values(svc), "version": services.c.version + 1}
        if archive_at is not None:
            values["archived_at"] = archive_at
        await self.session.execute(update(services).where(services.c.id == svc.id).values(**values))
        svc.version += 1

    async def add_closure(self, c: Closure) -> None:
        await self.session.execute(
            insert(closures).values(
                id=c.id, clinic_id=c.clinic_id, start_date=c.start_date, end_date=c.end_date, reason=c.reason
            )
        )

    async def delete_closure(self, clinic_id: uuid.UUID, closure_id: uuid.UUID) -> bool:
        r = await self.session.execute(
            delete(closures).where(closures.c.clinic_id == clinic_id, closures.c.id == closure_id)
        )
        return bool(cast(CursorResult[Any], r).rowcount)

    async def list_closures(
        self, clinic_id: uuid.UUID, after: tuple[str, ...] | None, limit: int
    ) -> list[Closure]:
        q = (
            select(closures)
            .where(closures.c.clinic_id == clinic_id, closures.c.end_date >= func.current_date() - 2)
            .order_by(closures.c.start_date, closures.c.id)
            .limit(limit)
        )
        if after:
            q = q.where(
                func.row(closures.c.start_date, closures.c.id)
                > func.row(date.fromisoformat(after[0]), uuid.UUID(after[1]))
            )
        return [
            Closure(c.id, c.clinic_id, c.start_date, c.end_date, c.reason)
            for c in await self.session.execute(q)
        ]

    async def put_override(self, clinic_id: uuid.UUID, day: date, ivs: list[Interval]) -> None:
        stmt = pg_insert(day_overrides).values(clinic_id=clinic_id, day=day, intervals=intervals_json(ivs))
        await self.session.execute(
            stmt.on_conflict_do_update(
                index_elements=["clinic_id", "day"], set_={"intervals": stmt.excluded.intervals}
            )
        )

    async def delete_override(self, clinic_id: uuid.UUID, day: date) -> bool:
        r = await self.session.execute(
            delete(day_overrides).where(day_overrides.c.clinic_id == clinic_id, day_overrides.c.day == day)
        )
        return bool(cast(CursorResult[Any], r).rowcount)

    async def upsert_clinic(self, clinic: Clinic) -> None:
        values = {
            "id": clinic.id,
            "name": clinic.name,
            "time_zone": clinic.time_zone,
            "address": clinic.address,
            "phone": clinic.phone,
            "email": clinic.email,
            "locale": clinic.locale,
            "opening_hours": hours_json(clinic.opening_hours),
            "reminder_offsets_minutes": list(clinic.reminder_offsets_minutes),
        }
        stmt = pg_insert(clinics).values(**values)
        await self.session.execute(
            stmt.on_conflict_do_update(
                index_elements=["id"], set_={k: stmt.excluded[k] for k in values if k != "id"}
            )
        )

    async def upsert_service(self, svc: Service) -> None:
        values = {"id": svc.id, **service_values(svc)}
        stmt = pg_insert(services).values(**values)
        await self.session.execute(
            stmt.on_conflict_do_update(
                index_elements=["id"], set_={k: stmt.excluded[k] for k in values if k != "id"}
            )
        )
