"""Service accounts of clinic systems: created by a clinic admin (the secret shown once, stored
hashed), their secret rotated (ending their sessions), and the client-credentials token exchange."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from datetime import datetime

from auth_svc.domain import (
    ROLE_SERVICE,
    InvalidCredentials,
    ServiceAccountNotFound,
    User,
    new_refresh_secret,
    service_account_email,
)
from auth_svc.handlers.accounts import AuthHandlers, TokenPair
from petpro.authn import Principal, require_clinic


@dataclass(frozen=True)
class ServiceCredentials:
    client_id: uuid.UUID
    clinic_id: uuid.UUID
    name: str
    role: str
    secret: str
    created_at: datetime


class ServiceAccountHandlers:
    """Every method but ``issue_service_token`` takes the authenticated caller first and checks that
    they administer the clinic it names."""

    def __init__(self, auth: AuthHandlers) -> None:
        self.auth = auth
        self.uow = auth.uow
        self.read = auth.read
        self.passwords = auth.passwords
        self.clock = auth.clock

    async def create_service_account(
        self, caller: Principal, clinic_id: uuid.UUID, name: str, role: str
    ) -> ServiceCredentials:
        require_clinic(caller, str(clinic_id), admin=True)
        client_id, secret, now = uuid.uuid4(), new_refresh_secret(), self.clock()
        user = User(
            id=client_id,
            email=service_account_email(client_id),
            name=name.strip(),
            password_hash=await asyncio.to_thread(self.passwords.hash, secret),
            roles=(ROLE_SERVICE,),
            memberships={str(clinic_id): role},
            created_at=now,
        )
        async with self.uow() as repo:
            await repo.add_user(user)
        return ServiceCredentials(client_id, clinic_id, user.name, role, secret, now)

    async def rotate_secret(self, caller: Principal, clinic_id: uuid.UUID, client_id: uuid.UUID) -> str:
        require_clinic(caller, str(clinic_id), admin=True)
        secret, now = new_refresh_secret(), self.clock()
        hashed = await asyncio.to_thread(self.passwords.hash, secret)
        async with self.uow() as repo:
            account = await repo.user_by_id(client_id)
            if (
                account is None
                or ROLE_SERVICE not in account.roles
                or str(clinic_id) not in account.memberships
            ):
                raise ServiceAccountNotFound("service account not found")
            await repo.set_password_hash(client_id, hashed)
            await repo.revoke_user_sessions(client_id, now)
        return secret

    async def issue_service_token(self, client_id: uuid.UUID, secret: str) -> TokenPair:
        async with self.read() as repo:
            account = await repo.user_by_id(client_id)
        is_service = account is not None and ROLE_SERVICE in account.roles
        ok = await asyncio.to_thread(
            self.passwords.verify, account.password_hash if is_service and account else None, secret
        )
        if not ok or account is None or not is_service:
            raise InvalidCredentials("client id or secret is wrong")
        async with self.uow() as repo:
            return await self.auth.new_session(repo, account)
