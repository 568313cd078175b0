"""Auth use cases: each opens a unit of work, loads, applies the domain, commits."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from auth_svc.domain import (
    ROLE_CLINIC_STAFF,
    ROLE_OWNER,
    ROLE_SERVICE,
    Claims,
    EmailTaken,
    InvalidCredentials,
    Invitation,
    InvitationInvalid,
    LastClinicAdmin,
    Member,
    Passwords,
    ServiceAccountNotFound,
    Session,
    TokenInvalid,
    TokenIssuer,
    TokenRevoked,
    User,
    hash_secret,
    new_invitation_token,
    new_refresh_secret,
    normalize_email,
    secrets_match,
    service_account_email,
    split_refresh_token,
)
from auth_svc.ports import AuthRepository, UnitOfWork
from petpro import paging
from petpro.authn import Principal, bearer, metadata, principal_var, require_clinic
from petpro.backoff import Rule
from petpro.clock import utcnow

# what is throttled (petpro.throttle): failed logins per (account, client address) and per address —
# never per account alone, so nobody can lock an owner out by failing on their account from elsewhere —
# and registrations per address
LOGIN_PER_ACCOUNT_AND_SOURCE = Rule("login-account-source", free=5)
LOGIN_PER_SOURCE = Rule("login-source", free=20)
REGISTER_PER_SOURCE = Rule("register-source", free=20, window=3600)


class NoThrottle:
    async def check(self, *subjects: tuple[Rule, str]) -> None: ...
    async def failed(self, *subjects: tuple[Rule, str]) -> None: ...
    async def succeeded(self, *subjects: tuple[Rule, str]) -> None: ...


@dataclass(frozen=True)
class TokenPair:
    access_token: str
    refresh_token: str
    expires_in: int
    user: User


class AuthHandlers:
    def __init__(
        self,
        uow: UnitOfWork,
        passwords: Passwords,
        issuer: TokenIssuer,
        *,
        refresh_ttl: timedelta = timedelta(days=30),
        clock: Callable[[], datetime] = utcnow,
        read: UnitOfWork | None = None,
        throttle: Any = None,
        rules: tuple[Rule, Rule, Rule] = (
            LOGIN_PER_ACCOUNT_AND_SOURCE,
            LOGIN_PER_SOURCE,
            REGISTER_PER_SOURCE,
        ),
    ) -> None:
        self.throttle = throttle or NoThrottle()  # petpro.throttle.Throttle in production
        self.login_pair_rule, self.login_source_rule, self.register_rule = rules
        self.uow = uow
        self.read = read or uow  # read-only: no transaction
        self.passwords = passwords
        self.issuer = issuer
        self.refresh_ttl = refresh_ttl
        self.clock = clock

    async def register(
        self,
        email: str,
        password: str,
        name: str,
        *,
        roles: tuple[str, ...] = (ROLE_OWNER,),
        memberships: dict[str, str] | None = None,
        client_address: str = "",
    ) -> User:
        if client_address:  # every registration counts (there is no "failure" to wait for)
            source = (self.register_rule, client_address)
            await self.throttle.check(source)
            await self.throttle.failed(source)
        user = User(
            id=uuid.uuid4(),
            email=normalize_email(email),
            name=name.strip(),
            password_hash=await asyncio.to_thread(self.passwords.hash, password),
            roles=roles,
            memberships=dict(memberships or {}),
            created_at=self.clock(),
        )
        async with self.uow() as repo:
            if not await repo.add_user(user):
                raise EmailTaken("an account with this email already exists")
        return user

    async def login(self, email: str, password: str, client_address: str = "") -> TokenPair:
        email = normalize_email(email)
        pair = (self.login_pair_rule, f"{email}|{client_address}")
        subjects = (pair, (self.login_source_rule, client_address)) if client_address else (pair,)
        await self.throttle.check(*subjects)
        async with self.uow() as repo:
            user = await repo.user_by_email(email)
        # argon2 is deliberately slow (~50-100 ms of CPU): off the event loop, outside the transaction.
        # An unknown email is verified against a dummy hash of the same cost: same work, same timing.
        ok = await asyncio.to_thread(self.passwords.verify, user.password_hash if user else None, password)
        if not ok or user is None or ROLE_SERVICE in user.roles:  # service accounts: IssueServiceToken only
            await self.throttle.failed(*subjects)
            raise InvalidCredentials("email or password is wrong")
        await self.throttle.succeeded(pair)
        async with self.uow() as repo:
            if self.passwords.needs_rehash(user.password_hash):
                await repo.set_password_hash(user.id, await asyncio.to_thread(self.passwords.hash, password))
            return await self._new_session(repo, user)

    async def _new_session(self, repo: AuthRepository, user: User) -> TokenPair:
        now = self.clock()
        secret = new_refresh_secret()
        session = Session(
            id=uuid.uuid4(),
            user_id=user.id,
            refresh_hash=hash_secret(secret),
            refresh_expires_at=now + self.refresh_ttl,
            created_at=now,
        )
        await repo.add_session(session)
        access, exp = self.issuer.issue(user, session.id, now)
        return TokenPair(access, f"{session.id}.{secret}", int((exp - now).total_seconds()), user)

    async def refresh(self, refresh_token: str) -> TokenPair:
        sid, secret = split_refresh_token(refresh_token)
        now = self.clock()
        reused = False
        async with self.uow() as repo:
            session = await repo.session_for_update(sid)
            if session is None:
                raise TokenInvalid("unknown refresh token")
            if session.revoked:
                raise TokenRevoked("session was revoked")
            if session.refresh_expires_at <= now:
                raise TokenInvalid("refresh token expired")
            if not secrets_match(session.refresh_hash, secret):
                # a consumed (or forged) secret for a live session: treat as theft, end the session
                await repo.revoke_session(sid, now)
                reused = True
            else:
                user = await repo.user_by_id(session.user_id)
                if user is None:
                    raise TokenInvalid("user no longer exists")
                new_secret = new_refresh_secret()
                await repo.rotate_refresh(sid, hash_secret(new_secret), now + self.refresh_ttl)
                access, exp = self.issuer.issue(user, sid, now)
                return TokenPair(access, f"{sid}.{new_secret}", int((exp - now).total_seconds()), user)
        assert reused
        raise TokenRevoked("refresh token was already used; the session is revoked")

    async def validate(self, token: str) -> Claims:
        claims = self.issuer.verify(token, self.clock())
        async with self.read() as repo:
            exists, revoked_at = await repo.session_revoked_at(uuid.UUID(claims.session_id))
        if not exists or revoked_at is not None:
            raise TokenRevoked("token was revoked")
        return claims

    async def revoke(self, token: str) -> None:
        """Logout: end the session of an access or refresh token.  Unknown/invalid tokens: no-op."""
        now = self.clock()
        sid: uuid.UUID | None = None
        if token.count(".") == 2:  # a JWT
            try:
                sid = uuid.UUID(self.issuer.verify(token, now).session_id)
            except Exception:
                return
        else:
            try:
                sid, secret = split_refresh_token(token)
            except TokenInvalid:
                return
            async with self.uow() as repo:
                session = await repo.session_for_update(sid)
                if session is None or not secrets_match(session.refresh_hash, secret):
                    return
        async with self.uow() as repo:
            await repo.revoke_session(sid, now)


def principal_of(claims: Claims) -> Principal:
    """The kit's view of a validated token, so auth_svc checks clinic membership with the same rule
    (:func:`petpro.authn.require_clinic`) as every other service."""
    roles = frozenset(claims.roles)
    return Principal(
        claims.user_id,
        claims.email,
        claims.name,
        roles,
        frozenset(claims.memberships),
        claims.expires_at.timestamp(),
        dict(claims.memberships),
    )


# sends the invitation email: (email, clinic id, clinic role, token, expires at)
InvitationSender = Callable[[str, str, str, str, datetime], Awaitable[None]]


@dataclass(frozen=True)
class ServiceCredentials:
    client_id: uuid.UUID
    clinic_id: uuid.UUID
    name: str
    role: str
    secret: str
    created_at: datetime


class LocalAuthenticator:
    """The kit's authenticator interface (``validate(token)`` / ``principal(context)`` → Principal) for
    auth_svc's own client-facing service: tokens are checked here, not over gRPC."""

    def __init__(self, auth: AuthHandlers) -> None:
        self.auth = auth

    async def validate(self, token: str) -> Principal:
        return principal_of(await self.auth.validate(token))

    async def principal(self, context: Any) -> Principal:
        """The caller: the one the kit's interceptor authenticated for this RPC, else from metadata."""
        return principal_var.get() or await self.validate(bearer(metadata(context)))


class ClinicStaffHandlers:
    """Invitations, memberships and the service accounts of clinic systems.  Every method takes the
    authenticated caller first and checks membership of the clinic it names."""

    def __init__(
        self,
        auth: AuthHandlers,
        send_invitation: InvitationSender,
        *,
        invitation_ttl: timedelta = timedelta(hours=72),
    ) -> None:
        self.auth = auth
        self.uow = auth.uow
        self.read = auth.read
        self.passwords = auth.passwords
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
            return await self.auth._new_session(repo, account)
