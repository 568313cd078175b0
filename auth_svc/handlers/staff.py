"""Clinic staff: invitations (single use, replaced by a new one, emailed after the commit), their
acceptance, the clinic's member list and staff removal (which ends the removed person's sessions)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta

from auth_svc.domain import (
    ROLE_CLINIC_STAFF,
    EmailTaken,
    InvalidCredentials,
    Invitation,
    InvitationInvalid,
    LastClinicAdmin,
    Member,
    User,
    hash_secret,
    new_invitation_token,
    normalize_email,
)
from auth_svc.handlers.accounts import AuthHandlers
from petpro import paging
from petpro.authn import Principal, require_clinic

# sends the invitation email: (email, clinic id, clinic role, token, expires at)
InvitationSender = Callable[[str, str, str, str, datetime], Awaitable[None]]


class ClinicStaffHandlers:
    """Invitations and memberships of a clinic's staff.  Every method but ``accept`` (the invitee has no
    account yet) takes the authenticated caller first and checks membership of the clinic it names."""

    def __init__(
        self,
        auth: AuthHandlers,
        send_invitation: InvitationSender,
        *,
        invitation_ttl: timedelta = timedelta(hours=72),
    ) -> None:
        self.uow = auth.uow
        self.read = auth.read
        self.passwords = auth.passwords
        self.policy = auth.policy
        self.clock = auth.clock
        self.send_invitation = send_invitation
        self.invitation_ttl = invitation_ttl

    async def invite(self, caller: Principal, clinic_id: uuid.UUID, email: str, role: str) -> Invitation:
        require_clinic(caller, str(clinic_id), admin=True)
        now = self.clock()
        token = new_invitation_token()
        inv = Invitation(
            id=uuid.uuid4(),
            clinic_id=clinic_id,
            email=normalize_email(email),
            role=role,
            token_hash=hash_secret(token),
            invited_by=uuid.UUID(caller.user_id),
            expires_at=now + self.invitation_ttl,
            created_at=now,
        )
        async with self.uow() as repo:
            await repo.replace_invitation(inv)
        # after the commit: a failed send is UNAVAILABLE and inviting again replaces this invitation
        await self.send_invitation(inv.email, str(clinic_id), role, token, inv.expires_at)
        return inv

    async def accept(self, token: str, password: str, name: str) -> User:
        now = self.clock()
        async with self.uow() as repo:
            inv = await repo.invitation_for_update(hash_secret(token))
            if inv is None:
                raise InvitationInvalid("unknown invitation token")
            inv.check_usable(now)
            user = await repo.user_by_email(inv.email)
        if user is not None:
            ok = await asyncio.to_thread(self.passwords.verify, user.password_hash, password)
            if not ok:
                raise InvalidCredentials("this email has an account: give its password to accept")
        else:
            self.policy.check(password, email=inv.email)
            user = User(
                id=uuid.uuid4(),
                email=inv.email,
                name=name.strip(),
                password_hash=await asyncio.to_thread(self.passwords.hash, password),
                roles=(ROLE_CLINIC_STAFF,),
                created_at=now,
            )
        async with self.uow() as repo:
            inv = await repo.invitation_for_update(hash_secret(token))  # single use, also under a race
            if inv is None:
                raise InvitationInvalid("unknown invitation token")
            inv.check_usable(now)
            existing = await repo.user_by_email(inv.email)
            if existing is None:
                if not await repo.add_user(user):
                    raise EmailTaken("an account with this email was created meanwhile; accept again")
            else:
                user = existing
                if ROLE_CLINIC_STAFF not in user.roles:
                    await repo.set_roles(user.id, (*user.roles, ROLE_CLINIC_STAFF))
            await repo.put_membership(user.id, inv.clinic_id, inv.role)
            await repo.mark_accepted(inv.id, now)
            await repo.set_email_verified(user.id, inv.email, now)  # the invitation reached the address
            found = await repo.user_by_id(user.id)
        assert found is not None
        return found

    async def list_staff(
        self, caller: Principal, clinic_id: uuid.UUID, size: int, token: str
    ) -> tuple[list[Member], str]:
        require_clinic(caller, str(clinic_id))
        limit = paging.page_size(size)
        async with self.read() as repo:
            rows = await repo.list_members(clinic_id, paging.decode(token), limit)
        return rows, paging.next_token(rows, limit, lambda m: (m.email, str(m.user_id)))

    async def remove_staff(self, caller: Principal, clinic_id: uuid.UUID, user_id: uuid.UUID) -> None:
        require_clinic(caller, str(clinic_id), admin=True)
        now = self.clock()
        async with self.uow() as repo:
            admins = await repo.clinic_admins(clinic_id, lock=True)
            if admins == [user_id]:
                raise LastClinicAdmin(
                    "the last admin of a clinic cannot be removed; make another admin first"
                )
            if await repo.remove_membership(user_id, clinic_id):
                await repo.revoke_user_sessions(user_id, now)  # tokens carrying the membership end now
