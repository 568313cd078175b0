"""Load catalog data (clinics, services) into the booking schema; idempotent upserts by id."""

from __future__ import annotations

import sys
import uuid
from typing import Any

from booking_svc.adapters.repository import BookingRepository
from booking_svc.adapters.tables import SCHEMA
from booking_svc.domain import (
    DEFAULT_POLICY,
    WEEKDAYS,
    CancellationPolicy,
    Clinic,
    Interval,
    Provider,
    Resource,
    Service,
    ServiceNeed,
    check_locale,
    parse_hhmm,
)
from petpro import seedfile
from petpro.db import Database


def parse_hours(raw: dict[str, Any], owner: str) -> dict[str, list[Interval]]:
    hours = {}
    for day, ivs in (raw or {}).items():
        if day not in WEEKDAYS:
            raise ValueError(f"{owner}: unknown weekday {day!r} (use {', '.join(WEEKDAYS)})")
        hours[day] = [Interval(parse_hhmm(a), parse_hhmm(b)) for a, b in ivs]
    return hours


def parse_schedule(raw: dict[str, Any], clinic_id: uuid.UUID) -> tuple[list[Provider], list[Resource]]:
    """A clinic's providers and resource items (docs/design/scheduling.md)."""
    providers = [
        Provider(
            uuid.UUID(str(p["id"])),
            clinic_id,
            p["name"],
            parse_hours(p.get("weekly_hours") or {}, f"provider {p['name']!r}"),
        )
        for p in raw.get("providers", [])
    ]
    resources = [
        Resource(
            uuid.UUID(str(r["id"])),
            clinic_id,
            r["name"],
            str(r["type"]).strip().lower(),
            tuple(str(x).upper() for x in r.get("species", ())),
        )
        for r in raw.get("resources", [])
    ]
    return providers, resources


def parse_clinic(raw: dict[str, Any]) -> tuple[Clinic, list[Service]]:
    hours = parse_hours(raw.get("opening_hours") or {}, f"clinic {raw['name']!r}")
    clinic = Clinic(
        uuid.UUID(str(raw["id"])),
        raw["name"],
        raw["time_zone"],
        hours,
        raw.get("address", ""),
        raw.get("phone", ""),
        raw.get("email", ""),
        reminder_offsets_minutes=tuple(int(m) for m in raw.get("reminder_offsets_minutes", (2880, 120))),
        locale=check_locale(str(raw.get("locale") or ""), f"clinic {raw['name']!r} locale"),
    )
    clinic.zone  # noqa: B018 — validates the time zone name early
    services = [
        Service(
            uuid.UUID(str(s["id"])),
            clinic.id,
            s["name"],
            int(s["duration_minutes"]),
            int(s["price_minor"]),
            s["currency"],
            int(s.get("capacity", 1)),
            s.get("description", ""),
            tuple(str(x).upper() for x in s.get("species_allowed", ())),
            policy=CancellationPolicy(**s["cancellation_policy"])
            if s.get("cancellation_policy")
            else DEFAULT_POLICY,
            provider_ids=tuple(uuid.UUID(str(p)) for p in s.get("providers", ())),
            needs=tuple(
                ServiceNeed(str(n["resource_type"]).strip().lower(), int(n.get("quantity", 1)))
                for n in s.get("needs", ())
            ),
        )
        for s in raw.get("services", [])
    ]
    return clinic, services


async def load(database_url: str, data: dict[str, Any]) -> tuple[int, int]:
    db = Database(database_url, SCHEMA, app_name="petpro-seed", pool_size=1)
    n_clinics = n_services = 0
    try:
        async with db.unit_of_work() as session:
            repo = BookingRepository(session)
            for raw in data.get("clinics", []):
                clinic, services = parse_clinic(raw)
                await repo.upsert_clinic(clinic)
                n_clinics += 1
                providers, resources = parse_schedule(raw, clinic.id)
                for p in providers:
                    await repo.upsert_provider(p)
                for r in resources:
                    await repo.upsert_resource(r)
                for svc in services:
                    await repo.upsert_service(svc)
                    await repo.set_service_requirements(svc.id, clinic.id, svc.provider_ids, svc.needs)
                    n_services += 1
            await repo.bump_catalog()  # running services drop their cached catalog
    finally:
        await db.close()
    return n_clinics, n_services


def main(argv: list[str] | None = None) -> int:
    """``python -m booking_svc.seed FILE``: load the clinics and services of a seed YAML file into this service's schema
    (the database from the service's own settings: ``DATABASE_URL``, else the embedded default)."""
    from booking_svc.server import BookingSettings

    return seedfile.main(
        argv,
        prog="booking_svc.seed",
        settings=BookingSettings,
        loader=load,
        summary=lambda n: f"booking_svc: {n[0]} clinics, {n[1]} services",
    )


if __name__ == "__main__":
    sys.exit(main())
