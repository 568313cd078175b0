"""auth schema: users and sessions (SQLAlchemy 2.0 Core, async psycopg 3)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    ARRAY,
    Column,
    DateTime,
    MetaData,
    Row,
    String,
    Table,
    Text,
    Uuid,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from auth_svc.domain import Session, User

SCHEMA = "auth"
metadata = MetaData(schema=SCHEMA)

users = Table(
    "users",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("email", String(254), nullable=False, unique=True),
    Column("name", String(100), nullable=False),
    Column("password_hash", Text, nullable=False),
    Column("roles", ARRAY(String(32)), nullable=False),
    Column("clinic_ids", ARRAY(String(64)), nullable=False, server_default="{}"),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

sessions = Table(
    "sessions",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("user_id", Uuid, nullable=False, index=True),
    Column("refresh_hash", String(64), nullable=False),
    Column("refresh_expires_at", DateTime(timezone=True), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("revoked_at", DateTime(timezone=True)),
)


def _user(row: Row[Any]) -> User:
    return User(
        id=row.id,
        email=row.email,
        name=row.name,
        password_hash=row.password_hash,
        roles=tuple(row.roles),
        clinic_ids=tuple(row.clinic_ids or ()),
        created_at=row.created_at,
    )


def _session(row: Row[Any]) -> Session:
    return Session(
        id=row.id,
        user_id=row.user_id,
        refresh_hash=row.refresh_hash,
        refresh_expires_at=row.refresh_expires_at,
        created_at=row.created_at,
        revoked_at=row.revoked_at,
    )


class AuthRepository:
    """Queries of one unit of work (an open transaction)."""

    def __init__(self, session: AsyncSession | AsyncConnection) -> None:
        self.s = session

    async def add_user(self, user: User) -> bool:
        """Insert; False when the email is taken (unique constraint, race-safe)."""
        stmt = (
            pg_insert(users)
            .values(
                id=user.id, email=user.email, name=user.name, password_hash=user.password_hash,
                roles=list(user.roles), clinic_ids=list(user.clinic_ids), created_at=user.created_at,
            )
            .on_conflict_do_nothing(index_elements=["email"])
            .returning(users.c.id)
        )
        return (await self.s.execute(stmt)).first() is not None

    async def upsert_user(self, user: User) -> User:
        """Create or update by email (seeding staff / service accounts)."""
        stmt = pg_insert(users).values(
            id=user.id, email=user.email, name=user.name, password_hash=user.password_hash,
            roles=list(user.roles), clinic_ids=list(user.clinic_ids), created_at=user.created_at,
        )
        query = stmt.on_conflict_do_update(
            index_elements=["email"],
            set_={"name": stmt.excluded.name, "password_hash": stmt.excluded.password_hash,
                  "roles": stmt.excluded.roles, "clinic_ids": stmt.excluded.clinic_ids},
        ).returning(*users.c)
        return _user((await self.s.execute(query)).one())

    async def user_by_email(self, email: str) -> User | None:
        row = (await self.s.execute(select(users).where(users.c.email == email))).first()
        return _user(row) if row else None

    async def user_by_id(self, user_id: uuid.UUID) -> User | None:
        row = (await self.s.execute(select(users).where(users.c.id == user_id))).first()
        return _user(row) if row else None

    async def set_password_hash(self, user_id: uuid.UUID, password_hash: str) -> None:
        await self.s.execute(update(users).where(users.c.id == user_id).values(password_hash=password_hash))

    async def add_session(self, session: Session) -> None:
        await self.s.execute(
            insert(sessions).values(
                id=session.id, user_id=session.user_id, refresh_hash=session.refresh_hash,
                refresh_expires_at=session.refresh_expires_at, created_at=session.created_at,
            )
        )

    async def session_for_update(self, session_id: uuid.UUID) -> Session | None:
        q = select(sessions).where(sessions.c.id == session_id).with_for_update()
        row = (await self.s.execute(q)).first()
        return _session(row) if row else None

    async def session_revoked_at(self, session_id: uuid.UUID) -> tuple[bool, datetime | None]:
        """(exists, revoked_at) without locking: the ValidateToken hot path."""
        q = select(sessions.c.revoked_at).where(sessions.c.id == session_id)
        row = (await self.s.execute(q)).first()
        return (row is not None, row.revoked_at if row else None)

    async def rotate_refresh(self, session_id: uuid.UUID, refresh_hash: str, expires_at: datetime) -> None:
        await self.s.execute(
            update(sessions)
            .where(sessions.c.id == session_id)
            .values(refresh_hash=refresh_hash, refresh_expires_at=expires_at)
        )

    async def revoke_session(self, session_id: uuid.UUID, at: datetime) -> None:
        await self.s.execute(
            update(sessions)
            .where(sessions.c.id == session_id, sessions.c.revoked_at.is_(None))
            .values(revoked_at=at)
        )
