"""Provision clinic staff accounts from seed data (role CLINIC_STAFF, bound to their clinic)."""

from __future__ import annotations

import uuid
from typing import Any

from auth_svc.domain import ROLE_CLINIC_STAFF, Passwords, User, normalize_email
from auth_svc.repository import SCHEMA, AuthRepository
from petpro.db import Database


async def load(database_url: str, data: dict[str, Any]) -> int:
    passwords = Passwords()
    db = Database(database_url, SCHEMA, app_name="petpro-seed", pool_size=1)
    n = 0
    try:
        async with db.unit_of_work() as session:
            repo = AuthRepository(session)
            for clinic in data.get("clinics", []):
                for staff in clinic.get("staff", []):
                    await repo.upsert_user(User(
                        id=uuid.uuid4(), email=normalize_email(staff["email"]), name=staff["name"],
                        password_hash=passwords.hash(staff["password"]), roles=(ROLE_CLINIC_STAFF,),
                        clinic_ids=(str(clinic["id"]),),
                    ))
                    n += 1
    finally:
        await db.close()
    return n
