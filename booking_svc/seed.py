"""Load catalog data (clinics, services) into the booking schema; idempotent upserts by id."""

from __future__ import annotations

import asyncio
import sys
import uuid
from pathlib import Path
from typing import Any

from booking_svc.domain import WEEKDAYS, Clinic, Interval, Service, parse_hhmm
from booking_svc.repository import SCHEMA, BookingRepository
from petpro.db import Database


def parse_clinic(raw: dict[str, Any]) -> tuple[Clinic, list[Service]]:
    hours = {}
    for day, ivs in (raw.get("opening_hours") or {}).items():
        if day not in WEEKDAYS:
            raise ValueError(f"clinic {raw['name']!r}: unknown weekday {day!r} (use {', '.join(WEEKDAYS)})")
        hours[day] = [Interval(parse_hhmm(a), parse_hhmm(b)) for a, b in ivs]
    clinic = Clinic(uuid.UUID(str(raw["id"])), raw["name"], raw["time_zone"], hours, raw.get("address", ""),
                    raw.get("phone", ""), raw.get("email", ""))
    clinic.zone  # noqa: B018 — validates the time zone name early
    services = [
        Service(uuid.UUID(str(s["id"])), clinic.id, s["name"], int(s["duration_minutes"]), int(s["price_minor"]),
                s["currency"], int(s.get("capacity", 1)), s.get("description", ""),
                tuple(str(x).upper() for x in s.get("species_allowed", ())))
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
                for svc in services:
                    await repo.upsert_service(svc)
                    n_services += 1
            await repo.bump_catalog()  # running services drop their cached catalog
    finally:
        await db.close()
    return n_clinics, n_services


def main(argv: list[str] | None = None) -> int:
    """``python -m booking_svc.seed FILE``: load the clinics and services of a seed YAML file into this service's schema
    (the database from the service's own settings: ``DATABASE_URL``, else the embedded default)."""
    import yaml

    from booking_svc.server import BookingSettings
    from petpro.settings import load as load_settings

    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m booking_svc.seed FILE", file=sys.stderr)
        return 2
    path = Path(args[0])
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    url = load_settings(BookingSettings).url("database_url")
    clinics, services = asyncio.run(load(url, data))
    print(f"booking_svc: {clinics} clinics, {services} services")
    return 0


if __name__ == "__main__":
    sys.exit(main())
