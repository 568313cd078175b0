"""In-memory AuthRepository (auth_svc.ports)."""

from __future__ import annotations

import copy
import uuid
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import TYPE_CHECKING

from auth_svc.domain import Invitation, LinkToken, Member, Session, User
from tests.unit.fakes import FakeUnitOfWork


@dataclass
class AuthStore:
    users: dict[uuid.UUID, User] = field(default_factory=dict)
    sessions: dict[uuid.UUID, Session] = field(default_factory=dict)
    invitations: dict[uuid.UUID, Invitation] = field(default_factory=dict)
    links: dict[uuid.UUID, LinkToken] = field(default_factory=dict)
    outbox: dict[uuid.UUID, tuple[str, str, str, bytes]] = field(default_factory=dict)  # event id → row


class FakeAuthRepository:
    def __init__(self, store: AuthStore) -> None:
        self.store = store

    async def add_user(self, user: User) -> bool:
        if any(u.email == user.email for u in self.store.users.values()):
            return False
        self.store.users[user.id] = copy.deepcopy(user)
        return True

    async def upsert_user(self, user: User) -> User:
        existing = next((u for u in self.store.users.values() if u.email == user.email), None)
        stored = user
        if existing is not None:  # memberships are added or changed, never taken away (as in SQL)
            memberships = {**existing.memberships, **user.memberships}
            stored = replace(user, id=existing.id, created_at=existing.created_at, memberships=memberships)
        self.store.users[stored.id] = copy.deepcopy(stored)
        return copy.deepcopy(stored)

    async def user_by_email(self, email: str) -> User | None:
        return copy.deepcopy(next((u for u in self.store.users.values() if u.email == email), None))

    async def user_by_id(self, user_id: uuid.UUID) -> User | None:
        return copy.deepcopy(self.store.users.get(user_id))

    async def set_password_hash(self, user_id: uuid.UUID, password_hash: str) -> None:
        self.store.users[user_id].password_hash = password_hash

    async def add_session(self, session: Session) -> None:
        assert session.id not in self.store.sessions
        self.store.sessions[session.id] = copy.deepcopy(session)

    async def session_for_update(self, session_id: uuid.UUID) -> Session | None:
        return copy.deepcopy(self.store.sessions.get(session_id))

    async def session_revoked_at(self, session_id: uuid.UUID) -> tuple[bool, datetime | None]:
        s = self.store.sessions.get(session_id)
        return (s is not None, s.revoked_at if s else None)

    async def rotate_refresh(self, session_id: uuid.UUID, refresh_hash: str, expires_at: datetime) -> None:
        s = self.store.sessions[session_id]
        s.refresh_hash, s.refresh_expires_at = refresh_hash, expires_at

    async def revoke_session(self, session_id: uuid.UUID, at: datetime) -> None:
        s = self.store.sessions.get(session_id)
        if s is not None and s.revoked_at is None:
            s.revoked_at = at

    async def set_roles(self, user_id: uuid.UUID, roles: tuple[str, ...]) -> None:
        self.store.users[user_id].roles = roles

    # -- clinic memberships and invitations
    async def memberships(self, user_id: uuid.UUID) -> dict[str, str]:
        return dict(self.store.users[user_id].memberships)

    async def put_membership(self, user_id: uuid.UUID, clinic_id: uuid.UUID, role: str) -> None:
        self.store.users[user_id].memberships[str(clinic_id)] = role

    async def remove_membership(self, user_id: uuid.UUID, clinic_id: uuid.UUID) -> bool:
        user = self.store.users.get(user_id)
        return user is not None and user.memberships.pop(str(clinic_id), None) is not None

    async def clinic_admins(self, clinic_id: uuid.UUID, *, lock: bool = False) -> list[uuid.UUID]:
        return [
            u.id
            for u in self.store.users.values()
            if u.memberships.get(str(clinic_id)) == "ADMIN" and "SERVICE" not in u.roles
        ]

    async def list_members(
        self, clinic_id: uuid.UUID, after: tuple[str, ...] | None, limit: int
    ) -> list[Member]:
        rows = sorted(
            (u for u in self.store.users.values() if str(clinic_id) in u.memberships),
            key=lambda u: (u.email, str(u.id)),
        )
        return [
            Member(u.id, u.email, u.name, u.memberships[str(clinic_id)], "SERVICE" in u.roles)
            for u in rows
            if after is None or (u.email, str(u.id)) > after
        ][:limit]

    async def replace_invitation(self, inv: Invitation) -> None:
        for key, old in list(self.store.invitations.items()):
            if (old.clinic_id, old.email) == (inv.clinic_id, inv.email) and old.accepted_at is None:
                del self.store.invitations[key]
        self.store.invitations[inv.id] = copy.deepcopy(inv)

    async def invitation_for_update(self, token_hash: str) -> Invitation | None:
        return copy.deepcopy(
            next((i for i in self.store.invitations.values() if i.token_hash == token_hash), None)
        )

    async def mark_accepted(self, invitation_id: uuid.UUID, at: datetime) -> None:
        self.store.invitations[invitation_id].accepted_at = at

    async def revoke_user_sessions(
        self, user_id: uuid.UUID, at: datetime, *, keep: uuid.UUID | None = None
    ) -> None:
        for s in self.store.sessions.values():
            if s.user_id == user_id and s.revoked_at is None and s.id != keep:
                s.revoked_at = at

    # -- the owner's account
    async def save_profile(self, user: User) -> None:
        stored = self.store.users.get(user.id)
        if stored is not None:
            stored.name, stored.phone, stored.locale, stored.time_zone = (
                user.name,
                user.phone,
                user.locale,
                user.time_zone,
            )

    async def change_email(self, user_id: uuid.UUID, email: str) -> bool:
        if any(u.email == email and u.id != user_id for u in self.store.users.values()):
            return False
        stored = self.store.users.get(user_id)
        if stored is not None:
            stored.email, stored.email_verified_at = email, None
        return True

    async def set_email_verified(self, user_id: uuid.UUID, email: str, at: datetime) -> bool:
        stored = self.store.users.get(user_id)
        if stored is None or stored.email != email:
            return False
        stored.email_verified_at = at
        return True

    async def replace_link(self, link: LinkToken) -> None:
        assert all(old.token_hash != link.token_hash for old in self.store.links.values())
        for key, old in list(self.store.links.items()):
            if (old.user_id, old.purpose) == (link.user_id, link.purpose) and old.used_at is None:
                del self.store.links[key]
        self.store.links[link.id] = replace(copy.deepcopy(link), used_at=None)

    async def link_for_update(self, token_hash: str) -> LinkToken | None:
        return copy.deepcopy(next((t for t in self.store.links.values() if t.token_hash == token_hash), None))

    async def mark_link_used(self, link_id: uuid.UUID, at: datetime) -> None:
        link = self.store.links.get(link_id)
        if link is not None:
            link.used_at = at

    async def user_for_update(self, user_id: uuid.UUID) -> User | None:
        return await self.user_by_id(user_id)

    async def erase_user(self, user: User) -> None:
        stored = self.store.users[user.id]
        self.store.users[user.id] = replace(copy.deepcopy(user), memberships={}, created_at=stored.created_at)
        for key in [k for k, t in self.store.links.items() if t.user_id == user.id]:
            del self.store.links[key]
        for s in self.store.sessions.values():
            if s.user_id == user.id:
                s.refresh_hash, s.revoked_at = "", s.revoked_at or user.deleted_at

    async def account_emails(self, user_id: uuid.UUID) -> list[str]:
        user = self.store.users.get(user_id)
        found = {t.email for t in self.store.links.values() if t.user_id == user_id}
        return sorted(found | ({user.email} if user else set()))

    async def user_sessions(self, user_id: uuid.UUID) -> list[Session]:
        rows = sorted(
            (s for s in self.store.sessions.values() if s.user_id == user_id), key=lambda s: s.created_at
        )
        return copy.deepcopy(rows)

    async def add_outbox(
        self, event_id: uuid.UUID, topic: str, key: str, event_type: str, payload: bytes
    ) -> None:
        self.store.outbox.setdefault(event_id, (topic, key, event_type, payload))


def auth_uow(store: AuthStore | None = None) -> FakeUnitOfWork[AuthStore, FakeAuthRepository]:
    return FakeUnitOfWork(store or AuthStore(), FakeAuthRepository)


if TYPE_CHECKING:  # mypy checks that the fakes implement the ports (make lint)
    from auth_svc.ports import UnitOfWork

    _uow: UnitOfWork = auth_uow()
