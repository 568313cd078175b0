"""Load catalog data (clinics, services) into the booking schema; idempotent upserts by id."""

from __future__ import annotations

import uuid
from datetime import time
from typing import Any

from booking_svc.domain import WEEKDAYS, Clinic, Interval, Service
from booking_svc.repository import SCHEMA, BookingRepository
from petpro.db import Database


def parse_clinic(raw: dict[str, Any]) -> tuple[Clinic, list[Service]]:
    hours = {}
    for day, ivs in (raw.get("opening_hours") or {}).items():
        if day not in WEEKDAYS:
            raise ValueError(f"clinic {raw['name']!r}: unknown weekday {day!r} (use {', '.join(WEEKDAYS)})")
        hours[day] = [Interval(time.fromisoformat(a), time.fromisoformat(b)) for a, b in ivs]
    clinic = Clinic(uuid.UUID(str(raw["id"])), raw["name"], raw["time_zone"], hours, raw.get("address", ""),
                    raw.get("phone", ""), raw.get("email", ""))
    clinic.zone  # noqa: B018 — validates the time zone name early
    services = [
        Service(uuid.UUID(str(s["id"])), clinic.id, s["name"], int(s["duration_minutes"]), int(s["price_minor"]),
                s["currency"], int(s.get("capacity", 1)), s.get("description", ""))
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
    finally:
        await db.close()
    return n_clinics, n_services
