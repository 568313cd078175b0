"""Provision clinic staff accounts from seed data (role CLINIC_STAFF, bound to their clinic)."""

from __future__ import annotations

import sys
import uuid
from typing import Any

from auth_svc.adapters.repository import AuthRepository
from auth_svc.adapters.tables import SCHEMA
from auth_svc.domain import ROLE_CLINIC_STAFF, Passwords, User, normalize_email
from petpro import seedfile
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
                    await repo.upsert_user(
                        User(
                            id=uuid.uuid4(),
                            email=normalize_email(staff["email"]),
                            name=staff["name"],
                            password_hash=passwords.hash(staff["password"]),
                            roles=(ROLE_CLINIC_STAFF,),
                            memberships={str(clinic["id"]): str(staff.get("role", "staff")).upper()},
                        )
                    )
                    n += 1
    finally:
        await db.close()
    return n


def main(argv: list[str] | None = None) -> int:
    """``python -m auth_svc.seed FILE``: load the clinic staff accounts of a seed YAML file into this service's schema
    (the database from the service's own settings: ``DATABASE_URL``, else the embedded default)."""
    from auth_svc.server import AuthSettings

    return seedfile.main(
        argv,
        prog="auth_svc.seed",
        settings=AuthSettings,
        loader=load,
        summary=lambda staff: f"auth_svc: {staff} staff accounts",
    )


if __name__ == "__main__":
    sys.exit(main())
