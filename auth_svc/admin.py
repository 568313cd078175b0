"""``python -m auth_svc.admin create-platform-admin EMAIL``: create (or reset) a platform admin account on a
fresh install, the one account nobody else can create.  The password comes from ``PETPRO_ADMIN_PASSWORD``
(so it never shows in a process list).  The database is the service's own (``DATABASE_URL``, else the
embedded default); run it through ``petpro admin create-platform-admin``."""

from __future__ import annotations

import asyncio
import os
import sys
import uuid

from auth_svc.adapters.repository import AuthRepository
from auth_svc.adapters.tables import SCHEMA
from auth_svc.domain import ROLE_PLATFORM_ADMIN, Passwords, User, normalize_email
from petpro.db import Database


async def create_platform_admin(database_url: str, email: str, password: str, name: str) -> User:
    db = Database(database_url, SCHEMA, app_name="petpro-admin", pool_size=1)
    try:
        async with db.unit_of_work() as session:
            return await AuthRepository(session).upsert_user(
                User(
                    id=uuid.uuid4(),
                    email=normalize_email(email),
                    name=name,
                    password_hash=Passwords().hash(password),
                    roles=(ROLE_PLATFORM_ADMIN,),
                )
            )
    finally:
        await db.close()


def main(argv: list[str] | None = None) -> int:
    from auth_svc.server import AuthSettings
    from petpro.settings import load as load_settings

    args = sys.argv[1:] if argv is None else argv
    password = os.environ.get("PETPRO_ADMIN_PASSWORD", "")
    if len(args) != 2 or args[0] != "create-platform-admin":
        print(
            "usage: PETPRO_ADMIN_PASSWORD=… python -m auth_svc.admin create-platform-admin EMAIL",
            file=sys.stderr,
        )
        return 2
    if not 8 <= len(password) <= 128:
        print("auth_svc.admin: PETPRO_ADMIN_PASSWORD must be 8 to 128 characters", file=sys.stderr)
        return 2
    url = load_settings(AuthSettings).url("database_url")
    user = asyncio.run(create_platform_admin(url, args[1], password, "Platform admin"))
    print(f"auth_svc: platform admin {user.email} ({user.id})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
