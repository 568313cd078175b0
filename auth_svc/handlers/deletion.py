"""Deleting an owner's account and exporting what auth holds about it.

Deletion needs the password (the same throttled check as a password change), erases the account in
one transaction (``auth_svc.domain.deletion.erased``: no email, name or phone left, no usable password,
every session ended, link tokens and memberships gone) and writes the AccountDeleted event to the
outbox in that same transaction: the relay publishes it to ``account.deleted``, where booking, payment
and notif erase their part, each exactly once.  A second call for a deleted account answers OK."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any

from auth_svc.domain import ROLE_OWNER, User
from auth_svc.domain.deletion import deletion_event_id, email_digests, erased
from auth_svc.handlers.my_account import AccountHandlers
from petpro.errors import FailedPrecondition
from petpro.mesh import ACCOUNT_DELETED

# builds the serialized AccountDeleted: (event id, user id, email digests, when) → bytes
EncodeDeleted = Callable[[uuid.UUID, uuid.UUID, list[str], datetime], bytes]


class AccountHasRoles(FailedPrecondition):
    """Staff, admins and service accounts leave their clinics (or are removed) before deletion."""

    reason = "ACCOUNT_HAS_CLINIC_ROLES"


class AccountDeletion:
    def __init__(self, account: AccountHandlers, encode_deleted: EncodeDeleted) -> None:
        self.account = account
        self.encode_deleted = encode_deleted

    async def delete_account(self, user_id: uuid.UUID, password: str, client_address: str = "") -> None:
        async with self.account.read() as repo:
            user = await self.account._user(repo, user_id)
        if user.deleted_at is not None:
            return  # idempotent: already done
        if set(user.roles) - {ROLE_OWNER} or user.memberships:
            raise AccountHasRoles("leave your clinics first: only an owner account can delete itself")
        await self.account._check_password(user, password, client_address)
        async with self.account.uow() as repo:
            current = await repo.user_for_update(user_id)
            if current is None or current.deleted_at is not None:
                return  # a concurrent deletion won
            now = self.account.clock()
            digests = email_digests(await repo.account_emails(user_id))
            event_id = deletion_event_id(user_id)
            await repo.erase_user(erased(current, now))
            await repo.add_outbox(
                event_id,
                ACCOUNT_DELETED.name,
                str(user_id),
                ACCOUNT_DELETED.event_type,
                self.encode_deleted(event_id, user_id, digests, now),
            )

    async def export_account(self, user_id: uuid.UUID) -> dict[str, Any]:
        async with self.account.read() as repo:
            user = await self.account._user(repo, user_id)
            sessions = await repo.user_sessions(user_id)
        return {
            "user": _user_json(user),
            "sessions": [
                {
                    "session_id": str(s.id),
                    "created_at": s.created_at.isoformat(),
                    "refresh_expires_at": s.refresh_expires_at.isoformat(),
                    "revoked_at": s.revoked_at.isoformat() if s.revoked_at else None,
                }
                for s in sessions
            ],
        }


def _user_json(user: User) -> dict[str, Any]:
    return {
        "user_id": str(user.id),
        "email": user.email,
        "name": user.name,
        "phone": user.phone,
        "locale": user.locale,
        "time_zone": user.time_zone,
        "roles": list(user.roles),
        "clinic_memberships": dict(sorted(user.memberships.items())),
        "email_verified_at": user.email_verified_at.isoformat() if user.email_verified_at else None,
        "created_at": user.created_at.isoformat(),
        "deleted_at": user.deleted_at.isoformat() if user.deleted_at else None,
    }
