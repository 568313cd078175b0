"""The owner's account: registration with a verification mail, password reset by mail, email
verification and its resend, changing the password or the email, logging out (one session or
everywhere), and the profile (name, phone, locale, time zone).

Links sent by mail carry a single-use token that expires; only its SHA-256 is stored.  Guessable or
abusable steps are throttled (petpro.throttle rules below).  A reset request answers the same, and
after the same time (``answer_floor``), whether or not the email has an account."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import timedelta

from auth_svc.domain import (
    EMAIL_VERIFICATION,
    INVITED_PASSWORD,
    PASSWORD_RESET,
    ROLE_OWNER,
    ROLE_SERVICE,
    EmailTaken,
    LinkToken,
    LinkTokenInvalid,
    SessionNotFound,
    TokenInvalid,
    User,
    UserNotFound,
    WrongPassword,
    check_profile,
    hash_secret,
    locale_from_accept_language,
    new_link_token,
    normalize_email,
    secrets_match,
    split_refresh_token,
    unknown_link,
    updated_profile,
)
from auth_svc.handlers.accounts import AuthHandlers
from auth_svc.ports import AccountMail, AuthRepository
from petpro.backoff import Rule
from petpro.errors import FailedPrecondition, InvalidArgument

# every reset request counts, per email (whether or not it has an account: the throttle must not tell)
# and per client address
RESET_PER_ACCOUNT = Rule("reset-account", free=3, window=3600)
RESET_PER_SOURCE = Rule("reset-source", free=10, window=3600)
# failed redemptions of a link token (reset, verification) per client address
LINK_FAILURES_PER_SOURCE = Rule("link-source", free=10)
# verification mails asked for again, per account
VERIFICATION_PER_ACCOUNT = Rule("verification-account", free=3, window=3600)
# wrong current passwords when changing the password or the email, per (account, client address)
PASSWORD_CHECK_PER_ACCOUNT_AND_SOURCE = Rule("password-check", free=5)


@dataclass(frozen=True)
class AccountRules:
    reset_account: Rule = RESET_PER_ACCOUNT
    reset_source: Rule = RESET_PER_SOURCE
    link_source: Rule = LINK_FAILURES_PER_SOURCE
    verification_account: Rule = VERIFICATION_PER_ACCOUNT
    password_check: Rule = PASSWORD_CHECK_PER_ACCOUNT_AND_SOURCE


class EmailAlreadyVerified(FailedPrecondition):
    reason = "EMAIL_ALREADY_VERIFIED"


class AccountHandlers:
    def __init__(
        self,
        auth: AuthHandlers,
        mail: AccountMail,
        *,
        reset_ttl: timedelta = timedelta(minutes=30),
        verification_ttl: timedelta = timedelta(hours=48),
        invitation_ttl: timedelta = timedelta(days=7),
        rules: AccountRules = AccountRules(),
        answer_floor: float = 0.25,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.auth = auth
        self.uow = auth.uow
        self.read = auth.read
        self.passwords = auth.passwords
        self.policy = auth.policy
        self.throttle = auth.throttle
        self.clock = auth.clock
        self.mail = mail
        self.reset_ttl = reset_ttl
        self.verification_ttl = verification_ttl
        self.invitation_ttl = invitation_ttl
        self.rules = rules
        self.answer_floor = answer_floor
        self.monotonic = monotonic
        self.sleep = sleep

    # -- registration and verification ----------------------------------------------------------------
    async def register(
        self,
        email: str,
        password: str,
        name: str,
        *,
        locale: str = "",
        time_zone: str = "",
        accept_language: str = "",
        client_address: str = "",
    ) -> User:
        """An owner account; its locale is the given one, else the client's Accept-Language.  A
        verification mail goes to the address (the account works before it is verified)."""
        profile = check_profile({"locale": locale, "time_zone": time_zone}, prefix="")
        user = await self.auth.register(
            email,
            password,
            name,
            client_address=client_address,
            locale=profile["locale"] or locale_from_accept_language(accept_language),
            time_zone=profile["time_zone"],
        )
        async with self.uow() as repo:
            token, link = await self._new_link(repo, user, EMAIL_VERIFICATION, self.verification_ttl)
        self.mail.verify_email(user.email, user.name, token, link.expires_at)
        return user

    async def _new_link(
        self, repo: AuthRepository, user: User, purpose: str, ttl: timedelta
    ) -> tuple[str, LinkToken]:
        token, now = new_link_token(), self.clock()
        link = LinkToken(
            id=uuid.uuid4(),
            user_id=user.id,
            purpose=purpose,
            email=user.email,
            token_hash=hash_secret(token),
            expires_at=now + ttl,
            created_at=now,
        )
        await repo.replace_link(link)
        return token, link

    async def resend_verification(self, user_id: uuid.UUID) -> None:
        """A new verification link (the previous one stops working); throttled per account."""
        subject = (self.rules.verification_account, str(user_id))
        await self.throttle.failed(subject)  # every request counts, this one too: the free ones are mailed
        await self.throttle.check(subject)
        async with self.uow() as repo:
            user = await self._user(repo, user_id)
            if user.email_verified:
                raise EmailAlreadyVerified("the email address is already verified")
            token, link = await self._new_link(repo, user, EMAIL_VERIFICATION, self.verification_ttl)
        self.mail.verify_email(user.email, user.name, token, link.expires_at)

    async def verify_email(self, token: str, client_address: str = "") -> User:
        """Redeem a verification link: the address it was sent to is verified, if it is still the
        account's address."""
        source = (self.rules.link_source, client_address)
        if client_address:
            await self.throttle.check(source)
        now = self.clock()
        try:
            async with self.uow() as repo:
                link = await repo.link_for_update(hash_secret(token))
                if link is None or link.purpose != EMAIL_VERIFICATION:
                    raise unknown_link()
                user = await self._user(repo, link.user_id)
                link.check_usable(now, email=user.email)
                await repo.set_email_verified(user.id, user.email, now)
                await repo.mark_link_used(link.id, now)
                user.email_verified_at = now
                return user
        except LinkTokenInvalid:
            if client_address:
                await self.throttle.failed(source)
            raise

    # -- owners invited by clinic staff -----------------------------------------------------------------
    async def invite_owner(
        self, email: str, name: str, *, phone: str = "", clinic_name: str = "", validate_only: bool = False
    ) -> tuple[User | None, bool]:
        """The owner account of ``email`` (staff book for them), or a new one without a password: the
        owner is mailed an invitation to claim it, a password-reset link (single use, expiring after
        ``invitation_ttl``) redeemed with ``reset_password``, which sets the password and verifies the
        address.  (user, True) when created now.  A service account's email is not an owner's.
        ``validate_only``: nothing written or mailed; (None, True) when an account would be created."""
        email = normalize_email(email)
        async with self.read() as repo:
            found = await repo.user_by_email(email)
        if found is None:
            profile = check_profile({"name": name, "phone": phone}, prefix="")
            if not profile["name"]:
                raise InvalidArgument.field("name", "is required for a new owner", "NAME_REQUIRED")
            if validate_only:
                return None, True
            user = User(
                id=uuid.uuid4(),
                email=email,
                name=profile["name"],
                password_hash=INVITED_PASSWORD,
                roles=(ROLE_OWNER,),
                created_at=self.clock(),
                phone=profile["phone"],
            )
            async with self.uow() as repo:
                if await repo.add_user(user):
                    token, link = await self._new_link(repo, user, PASSWORD_RESET, self.invitation_ttl)
                else:  # registered (or invited) concurrently: that account
                    found = await repo.user_by_email(email)
            if found is None:
                self.mail.owner_invitation(user.email, user.name, clinic_name, token, link.expires_at)
                return user, True
        if ROLE_SERVICE in found.roles:
            raise UserNotFound("no owner account with this email")
        return found, False

    # -- password reset -------------------------------------------------------------------------------
    async def request_password_reset(self, email: str, client_address: str = "") -> None:
        """Mail a reset link if ``email`` has an (owner or staff) account.  The answer is the same
        either way, and comes after ``answer_floor`` seconds at the earliest on every path (the
        same statement count, the mail queued, not sent, while the caller waits)."""
        start = self.monotonic()
        try:
            email = normalize_email(email)
            subjects = [(self.rules.reset_account, email)]
            if client_address:
                subjects.append((self.rules.reset_source, client_address))
            await self.throttle.failed(*subjects)  # every request counts, this one too
            await self.throttle.check(*subjects)
            sent: tuple[User, str, LinkToken] | None = None
            async with self.uow() as repo:
                user = await repo.user_by_email(email)
                if user is not None and ROLE_SERVICE not in user.roles:
                    token, link = await self._new_link(repo, user, PASSWORD_RESET, self.reset_ttl)
                    sent = (user, token, link)
            if sent is not None:
                user, token, link = sent
                self.mail.password_reset(user.email, user.name, token, link.expires_at)
        finally:
            left = self.answer_floor - (self.monotonic() - start)
            if left > 0:
                await self.sleep(left)

    async def reset_password(
        self, email: str, token: str, new_password: str, client_address: str = ""
    ) -> None:
        """Set a new password with a reset link mailed to ``email``: the link is used up, every
        session of the account ends (its access tokens stop working), and the address counts as
        verified (the mail reached it)."""
        email = normalize_email(email)
        source = (self.rules.link_source, client_address)
        if client_address:
            await self.throttle.check(source)
        self.policy.check(new_password, email=email, field="new_password")
        password_hash = await asyncio.to_thread(self.passwords.hash, new_password)
        now = self.clock()
        try:
            async with self.uow() as repo:
                link = await repo.link_for_update(hash_secret(token))
                if link is None or link.purpose != PASSWORD_RESET:
                    raise unknown_link()
                user = await repo.user_by_email(email)
                link.check_usable(now, user_id=user.id if user else None, email=email)
                if user is None:  # the link's account no longer has this email
                    raise unknown_link()
                await repo.set_password_hash(user.id, password_hash)
                await repo.mark_link_used(link.id, now)
                await repo.revoke_user_sessions(user.id, now)
                await repo.set_email_verified(user.id, email, now)
        except LinkTokenInvalid:
            if client_address:
                await self.throttle.failed(source)
            raise

    # -- signed-in changes ----------------------------------------------------------------------------
    async def _user(self, repo: AuthRepository, user_id: uuid.UUID) -> User:
        user = await repo.user_by_id(user_id)
        if user is None:
            raise UserNotFound("user not found")
        return user

    async def _check_password(self, user: User, password: str, client_address: str) -> None:
        subject = (self.rules.password_check, f"{user.id}|{client_address}")
        await self.throttle.check(subject)
        ok = await asyncio.to_thread(self.passwords.verify, user.password_hash, password)
        if not ok:
            await self.throttle.failed(subject)
            raise WrongPassword("the current password is wrong")
        await self.throttle.succeeded(subject)

    async def change_password(
        self,
        user_id: uuid.UUID,
        session_id: uuid.UUID | None,
        current_password: str,
        new_password: str,
        client_address: str = "",
    ) -> None:
        """Needs the current password; every other session of the account ends (``session_id``,
        the caller's, stays)."""
        async with self.read() as repo:
            user = await self._user(repo, user_id)
        await self._check_password(user, current_password, client_address)
        self.policy.check(new_password, email=user.email, field="new_password")
        if new_password == current_password:
            raise InvalidArgument.field(
                "new_password", "must differ from the current password", "PASSWORD_UNCHANGED"
            )
        password_hash = await asyncio.to_thread(self.passwords.hash, new_password)
        async with self.uow() as repo:
            await repo.set_password_hash(user.id, password_hash)
            await repo.revoke_user_sessions(user.id, self.clock(), keep=session_id)

    async def change_email(
        self, user_id: uuid.UUID, password: str, new_email: str, client_address: str = ""
    ) -> User:
        """Needs the password; the new address is unverified until its link is used, and the old
        address is told of the change."""
        new_email = normalize_email(new_email)
        async with self.read() as repo:
            user = await self._user(repo, user_id)
        await self._check_password(user, password, client_address)
        if new_email == user.email:
            raise InvalidArgument.field("new_email", "is already the account's email", "EMAIL_UNCHANGED")
        old = user.email
        async with self.uow() as repo:
            if not await repo.change_email(user.id, new_email):
                raise EmailTaken("an account with this email already exists")
            user = await self._user(repo, user_id)
            token, link = await self._new_link(repo, user, EMAIL_VERIFICATION, self.verification_ttl)
        self.mail.verify_email(user.email, user.name, token, link.expires_at)
        self.mail.email_changed(old, user.email, user.name)
        return user

    async def logout(self, user_id: uuid.UUID, refresh_token: str) -> None:
        """End the session of one of the caller's refresh tokens (its access tokens stop working).
        Another account's token, or an unknown one, is SESSION_NOT_FOUND; a second logout succeeds."""
        try:
            sid, secret = split_refresh_token(refresh_token)
        except TokenInvalid:
            raise SessionNotFound("no session of yours has this refresh token") from None
        async with self.uow() as repo:
            session = await repo.session_for_update(sid)
            if (
                session is None
                or session.user_id != user_id
                or not secrets_match(session.refresh_hash, secret)
            ):
                raise SessionNotFound("no session of yours has this refresh token")
            await repo.revoke_session(sid, self.clock())

    async def logout_everywhere(self, user_id: uuid.UUID) -> None:
        """End every session of the account, the caller's included."""
        async with self.uow() as repo:
            await repo.revoke_user_sessions(user_id, self.clock())

    # -- profile --------------------------------------------------------------------------------------
    async def get_user(self, user_id: uuid.UUID) -> User:
        async with self.read() as repo:
            return await self._user(repo, user_id)

    async def update_profile(
        self, user_id: uuid.UUID, mask: Iterable[str], values: Mapping[str, str]
    ) -> User:
        """AIP-134 update of the profile fields (see :func:`auth_svc.domain.updated_profile`)."""
        async with self.uow() as repo:
            user = updated_profile(await self._user(repo, user_id), mask, values)
            await repo.save_profile(user)
        return user
