"""Accounts: register, login (throttled), refresh-token rotation with reuse detection, validation and
revocation of tokens; the kit's view of a validated token (``principal_of``, ``LocalAuthenticator``)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from auth_svc.domain import (
    ROLE_OWNER,
    ROLE_SERVICE,
    Claims,
    EmailTaken,
    InvalidCredentials,
    PasswordPolicy,
    Passwords,
    Session,
    TokenInvalid,
    TokenIssuer,
    TokenRevoked,
    User,
    hash_secret,
    new_refresh_secret,
    normalize_email,
    secrets_match,
    split_refresh_token,
)
from auth_svc.ports import AuthRepository, UnitOfWork
from petpro.authn import Principal, bearer, metadata, principal_var
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
        policy: PasswordPolicy | None = None,
    ) -> None:
        self.policy = policy or PasswordPolicy()  # the server passes the common-passwords list
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
        locale: str = "",
        time_zone: str = "",
    ) -> User:
        """A new account (the password checked against the policy; ``locale`` and ``time_zone``
        already validated by the caller)."""
        email = normalize_email(email)
        self.policy.check(password, email=email)
        if client_address:  # every registration counts (there is no "failure" to wait for)
            source = (self.register_rule, client_address)
            await self.throttle.check(source)
            await self.throttle.failed(source)
        user = User(
            id=uuid.uuid4(),
            email=email,
            name=name.strip(),
            password_hash=await asyncio.to_thread(self.passwords.hash, password),
            roles=roles,
            memberships=dict(memberships or {}),
            created_at=self.clock(),
            locale=locale,
            time_zone=time_zone,
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
            return await self.new_session(repo, user)

    async def new_session(self, repo: AuthRepository, user: User) -> TokenPair:
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
        locale=claims.locale,
    )


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
