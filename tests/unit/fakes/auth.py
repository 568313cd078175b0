"""In-memory AuthRepository (auth_svc.ports)."""

from __future__ import annotations

import copy
import uuid
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import TYPE_CHECKING

from auth_svc.domain import Session, User
from tests.unit.fakes import FakeUnitOfWork


@dataclass
class AuthStore:
    users: dict[uuid.UUID, User] = field(default_factory=dict)
    sessions: dict[uuid.UUID, Session] = field(default_factory=dict)


class FakeAuthRepository:
    def __init__(self, store: AuthStore) -> None:
        self.s = store

    async def add_user(self, user: User) -> bool:
        if any(u.email == user.email for u in self.s.users.values()):
            return False
        self.s.users[user.id] = copy.deepcopy(user)
        return True

    async def upsert_user(self, user: User) -> User:
        existing = next((u for u in self.s.users.values() if u.email == user.email), None)
        stored = replace(user, id=existing.id, created_at=existing.created_at) if existing else user
        self.s.users[stored.id] = copy.deepcopy(stored)
        return copy.deepcopy(stored)

    async def user_by_email(self, email: str) -> User | None:
        return copy.deepcopy(next((u for u in self.s.users.values() if u.email == email), None))

    async def user_by_id(self, user_id: uuid.UUID) -> User | None:
        return copy.deepcopy(self.s.users.get(user_id))

    async def set_password_hash(self, user_id: uuid.UUID, password_hash: str) -> None:
        self.s.users[user_id].password_hash = password_hash

    async def add_session(self, session: Session) -> None:
        assert session.id not in self.s.sessions
        self.s.sessions[session.id] = copy.deepcopy(session)

    async def session_for_update(self, session_id: uuid.UUID) -> Session | None:
        return copy.deepcopy(self.s.sessions.get(session_id))

    async def session_revoked_at(self, session_id: uuid.UUID) -> tuple[bool, datetime | None]:
        s = self.s.sessions.get(session_id)
        return (s is not None, s.revoked_at if s else None)

    async def rotate_refresh(self, session_id: uuid.UUID, refresh_hash: str, expires_at: datetime) -> None:
        s = self.s.sessions[session_id]
        s.refresh_hash, s.refresh_expires_at = refresh_hash, expires_at

    async def revoke_session(self, session_id: uuid.UUID, at: datetime) -> None:
        s = self.s.sessions.get(session_id)
        if s is not None and s.revoked_at is None:
            s.revoked_at = at


def auth_uow(store: AuthStore | None = None) -> FakeUnitOfWork[AuthStore, FakeAuthRepository]:
    return FakeUnitOfWork(store or AuthStore(), FakeAuthRepository)


if TYPE_CHECKING:  # mypy checks that the fakes implement the ports (make lint)
    from auth_svc.ports import UnitOfWork

    _uow: UnitOfWork = auth_uow()
