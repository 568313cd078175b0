"""The AuthRepository port on PostgreSQL (SQLAlchemy 2.0 Core over async psycopg 3): users and their
profile, clinic memberships, invitations, sessions and link tokens, the queries of one unit of work."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, cast

from sqlalchemy import (
    CursorResult,
    Row,
    any_,
    delete,
    func,
    insert,
    literal,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from auth_svc.adapters.tables import (
    SCHEMA,
    clinic_memberships,
    invitations,
    link_tokens,
    outbox,
    sessions,
    users,
)
from auth_svc.domain import Invitation, LinkToken, Member, Session, User
from petpro.outbox import NOTIFY_CHANNEL


def _user(row: Row[Any], memberships: dict[str, str] | None = None) -> User:
    return User(
        id=row.id,
        email=row.email,
        name=row.name,
        password_hash=row.password_hash,
        roles=tuple(row.roles),
        memberships=dict(memberships or {}),
        created_at=row.created_at,
        email_verified_at=row.email_verified_at,
        phone=row.phone,
        locale=row.locale,
        time_zone=row.time_zone,
        deleted_at=row.deleted_at,
    )


def _link(row: Row[Any]) -> LinkToken:
    return LinkToken(
        id=row.id,
        user_id=row.user_id,
        purpose=row.purpose,
        email=row.email,
        token_hash=row.token_hash,
        expires_at=row.expires_at,
        created_at=row.created_at,
        used_at=row.used_at,
    )


def _user_values(user: User) -> dict[str, Any]:
    return {
        "id": user.id,
        "email": user.email,
        "name": user.name,
        "password_hash": user.password_hash,
        "roles": list(user.roles),
        "created_at": user.created_at,
        "email_verified_at": user.email_verified_at,
        "phone": user.phone,
        "locale": user.locale,
        "time_zone": user.time_zone,
    }


def _invitation(row: Row[Any]) -> Invitation:
    return Invitation(
        id=row.id,
        clinic_id=row.clinic_id,
        email=row.email,
        role=row.role,
        token_hash=row.token_hash,
        invited_by=row.invited_by,
        expires_at=row.expires_at,
        accepted_at=row.accepted_at,
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
        self.session = session

    async def add_user(self, user: User) -> bool:
        """Insert; False when the email is taken (unique constraint, race-safe)."""
        stmt = (
            pg_insert(users)
            .values(**_user_values(user))
            .on_conflict_do_nothing(index_elements=["email"])
            .returning(users.c.id)
        )
        if (await self.session.execute(stmt)).first() is None:
            return False
        for clinic_id, role in user.memberships.items():
            await self.put_membership(user.id, uuid.UUID(clinic_id), role)
        return True

    async def upsert_user(self, user: User) -> User:
        """Create or update by email (seeding staff / service accounts)."""
        stmt = pg_insert(users).values(**_user_values(user))
        query = stmt.on_conflict_do_update(
            index_elements=["email"],
            set_={
                "name": stmt.excluded.name,
                "password_hash": stmt.excluded.password_hash,
                "roles": stmt.excluded.roles,
            },
        ).returning(*users.c)
        row = (await self.session.execute(query)).one()
        for clinic_id, role in user.memberships.items():
            await self.put_membership(row.id, uuid.UUID(clinic_id), role)
        return _user(row, await self.memberships(row.id))

    async def user_by_email(self, email: str) -> User | None:
        row = (await self.session.execute(select(users).where(users.c.email == email))).first()
        return _user(row, await self.memberships(row.id)) if row else None

    async def user_by_id(self, user_id: uuid.UUID) -> User | None:
        row = (await self.session.execute(select(users).where(users.c.id == user_id))).first()
        return _user(row, await self.memberships(row.id)) if row else None

    async def set_roles(self, user_id: uuid.UUID, roles: tuple[str, ...]) -> None:
        await self.session.execute(update(users).where(users.c.id == user_id).values(roles=list(roles)))

    # -- clinic memberships ------------------------------------------------------------------------
    async def memberships(self, user_id: uuid.UUID) -> dict[str, str]:
        q = select(clinic_memberships.c.clinic_id, clinic_memberships.c.role).where(
            clinic_memberships.c.user_id == user_id
        )
        return {str(r.clinic_id): r.role for r in await self.session.execute(q)}

    async def put_membership(self, user_id: uuid.UUID, clinic_id: uuid.UUID, role: str) -> None:
        stmt = pg_insert(clinic_memberships).values(user_id=user_id, clinic_id=clinic_id, role=role)
        await self.session.execute(
            stmt.on_conflict_do_update(
                index_elements=["user_id", "clinic_id"], set_={"role": stmt.excluded.role}
            )
        )

    async def remove_membership(self, user_id: uuid.UUID, clinic_id: uuid.UUID) -> bool:
        result = await self.session.execute(
            delete(clinic_memberships).where(
                clinic_memberships.c.user_id == user_id, clinic_memberships.c.clinic_id == clinic_id
            )
        )
        return bool(cast(CursorResult[Any], result).rowcount)

    async def clinic_admins(self, clinic_id: uuid.UUID, *, lock: bool = False) -> list[uuid.UUID]:
        """User ids of the clinic's admins (people, not service accounts); ``lock`` serialises removals."""
        q = (
            select(clinic_memberships.c.user_id)
            .join(users, users.c.id == clinic_memberships.c.user_id)
            .where(
                clinic_memberships.c.clinic_id == clinic_id,
                clinic_memberships.c.role == "ADMIN",
                ~(literal("SERVICE") == any_(users.c.roles)),
            )
        )
        if lock:
            q = q.with_for_update(of=clinic_memberships)
        return [r.user_id for r in await self.session.execute(q)]

    async def list_members(
        self, clinic_id: uuid.UUID, after: tuple[str, ...] | None, limit: int
    ) -> list[Member]:
        q = (
            select(users.c.id, users.c.email, users.c.name, users.c.roles, clinic_memberships.c.role)
            .join(clinic_memberships, clinic_memberships.c.user_id == users.c.id)
            .where(clinic_memberships.c.clinic_id == clinic_id)
            .order_by(users.c.email, users.c.id)
            .limit(limit)
        )
        if after:
            q = q.where(func.row(users.c.email, users.c.id) > func.row(after[0], uuid.UUID(after[1])))
        return [
            Member(r.id, r.email, r.name, r.role, "SERVICE" in r.roles) for r in await self.session.execute(q)
        ]

    # -- invitations -----------------------------------------------------------------------------
    async def replace_invitation(self, inv: Invitation) -> None:
        """A new invitation for (clinic, email) replaces the pending one (its token stops working)."""
        await self.session.execute(
            delete(invitations).where(
                invitations.c.clinic_id == inv.clinic_id,
                invitations.c.email == inv.email,
                invitations.c.accepted_at.is_(None),
            )
        )
        await self.session.execute(
            insert(invitations).values(
                id=inv.id,
                clinic_id=inv.clinic_id,
                email=inv.email,
                role=inv.role,
                token_hash=inv.token_hash,
                invited_by=inv.invited_by,
                expires_at=inv.expires_at,
                created_at=inv.created_at,
            )
        )

    async def invitation_for_update(self, token_hash: str) -> Invitation | None:
        q = select(invitations).where(invitations.c.token_hash == token_hash).with_for_update()
        row = (await self.session.execute(q)).first()
        return _invitation(row) if row else None

    async def mark_accepted(self, invitation_id: uuid.UUID, at: datetime) -> None:
        await self.session.execute(
            update(invitations).where(invitations.c.id == invitation_id).values(accepted_at=at)
        )

    async def revoke_user_sessions(
        self, user_id: uuid.UUID, at: datetime, *, keep: uuid.UUID | None = None
    ) -> None:
        q = update(sessions).where(sessions.c.user_id == user_id, sessions.c.revoked_at.is_(None))
        if keep is not None:
            q = q.where(sessions.c.id != keep)
        await self.session.execute(q.values(revoked_at=at))

    # -- the owner's account ------------------------------------------------------------------------
    async def save_profile(self, user: User) -> None:
        await self.session.execute(
            update(users)
            .where(users.c.id == user.id)
            .values(name=user.name, phone=user.phone, locale=user.locale, time_zone=user.time_zone)
        )

    async def change_email(self, user_id: uuid.UUID, email: str) -> bool:
        """False when another account has the email (the unique constraint, race-safe)."""
        taken = select(users.c.id).where(users.c.email == email, users.c.id != user_id)
        if (await self.session.execute(taken)).first() is not None:
            return False
        async with self.session.begin_nested():  # a concurrent change to the same email
            try:
                await self.session.execute(
                    update(users).where(users.c.id == user_id).values(email=email, email_verified_at=None)
                )
            except IntegrityError:
                return False
        return True

    async def set_email_verified(self, user_id: uuid.UUID, email: str, at: datetime) -> bool:
        result = await self.session.execute(
            update(users).where(users.c.id == user_id, users.c.email == email).values(email_verified_at=at)
        )
        return bool(cast(CursorResult[Any], result).rowcount)

    async def replace_link(self, link: LinkToken) -> None:
        await self.session.execute(
            delete(link_tokens).where(
                link_tokens.c.user_id == link.user_id,
                link_tokens.c.purpose == link.purpose,
                link_tokens.c.used_at.is_(None),
            )
        )
        await self.session.execute(
            insert(link_tokens).values(
                id=link.id,
                user_id=link.user_id,
                purpose=link.purpose,
                email=link.email,
                token_hash=link.token_hash,
                expires_at=link.expires_at,
                created_at=link.created_at,
            )
        )

    async def link_for_update(self, token_hash: str) -> LinkToken | None:
        q = select(link_tokens).where(link_tokens.c.token_hash == token_hash).with_for_update()
        row = (await self.session.execute(q)).first()
        return _link(row) if row else None

    async def mark_link_used(self, link_id: uuid.UUID, at: datetime) -> None:
        await self.session.execute(update(link_tokens).where(link_tokens.c.id == link_id).values(used_at=at))

    async def set_password_hash(self, user_id: uuid.UUID, password_hash: str) -> None:
        await self.session.execute(
            update(users).where(users.c.id == user_id).values(password_hash=password_hash)
        )

    async def add_session(self, session: Session) -> None:
        await self.session.execute(
            insert(sessions).values(
                id=session.id,
                user_id=session.user_id,
                refresh_hash=session.refresh_hash,
                refresh_expires_at=session.refresh_expires_at,
                created_at=session.created_at,
            )
        )

    async def session_for_update(self, session_id: uuid.UUID) -> Session | None:
        q = select(sessions).where(sessions.c.id == session_id).with_for_update()
        row = (await self.session.execute(q)).first()
        return _session(row) if row else None

    async def session_revoked_at(self, session_id: uuid.UUID) -> tuple[bool, datetime | None]:
        """(exists, revoked_at) without locking: the ValidateToken hot path."""
        q = select(sessions.c.revoked_at).where(sessions.c.id == session_id)
        row = (await self.session.execute(q)).first()
        return (row is not None, row.revoked_at if row else None)

    async def rotate_refresh(self, session_id: uuid.UUID, refresh_hash: str, expires_at: datetime) -> None:
        await self.session.execute(
            update(sessions)
            .where(sessions.c.id == session_id)
            .values(refresh_hash=refresh_hash, refresh_expires_at=expires_at)
        )

    async def revoke_session(self, session_id: uuid.UUID, at: datetime) -> None:
        await self.session.execute(
            update(sessions)
            .where(sessions.c.id == session_id, sessions.c.revoked_at.is_(None))
            .values(revoked_at=at)
        )

    # -- account deletion and export ----------------------------------------------------------------
    async def user_for_update(self, user_id: uuid.UUID) -> User | None:
        row = (
            await self.session.execute(select(users).where(users.c.id == user_id).with_for_update())
        ).first()
        return _user(row, await self.memberships(user_id)) if row else None

    async def erase_user(self, user: User) -> None:
        """Store the erased account (``auth_svc.domain.deletion.erased``): its row keeps only the id;
        its memberships, link tokens and sessions' secrets go."""
        await self.session.execute(
            update(users)
            .where(users.c.id == user.id)
            .values(
                email=user.email,
                name=user.name,
                password_hash=user.password_hash,
                roles=list(user.roles),
                email_verified_at=None,
                phone="",
                locale="",
                time_zone="",
                deleted_at=user.deleted_at,
            )
        )
        await self.session.execute(delete(clinic_memberships).where(clinic_memberships.c.user_id == user.id))
        await self.session.execute(delete(link_tokens).where(link_tokens.c.user_id == user.id))
        await self.session.execute(
            update(sessions)
            .where(sessions.c.user_id == user.id)
            .values(refresh_hash="", revoked_at=func.coalesce(sessions.c.revoked_at, user.deleted_at))
        )

    async def account_emails(self, user_id: uuid.UUID) -> list[str]:
        """Every address the account has had that auth still knows: the current one and those of its
        link tokens (verification of an earlier address, resets)."""
        q = (
            select(users.c.email)
            .where(users.c.id == user_id)
            .union(select(link_tokens.c.email).where(link_tokens.c.user_id == user_id))
        )
        return sorted(r[0] for r in await self.session.execute(q))

    async def user_sessions(self, user_id: uuid.UUID) -> list[Session]:
        q = select(sessions).where(sessions.c.user_id == user_id).order_by(sessions.c.created_at)
        return [_session(r) for r in await self.session.execute(q)]

    async def add_outbox(
        self, event_id: uuid.UUID, topic: str, key: str, event_type: str, payload: bytes
    ) -> None:
        await self.session.execute(
            pg_insert(outbox)
            .values(event_id=event_id, topic=topic, key=key, event_type=event_type, payload=payload)
            .on_conflict_do_nothing(index_elements=["event_id"])
        )
        await self.session.execute(select(func.pg_notify(NOTIFY_CHANNEL, SCHEMA)))  # wakes auth's relay only
