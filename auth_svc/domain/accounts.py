"""Accounts: users and their roles, clinic memberships and invitations, login sessions, password
hashing and the secrets of refresh tokens and invitations."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from auth_svc.domain.errors import InvitationInvalid, TokenInvalid

ROLE_OWNER = "OWNER"
ROLE_CLINIC_STAFF = "CLINIC_STAFF"
ROLE_SERVICE = "SERVICE"
ROLE_PLATFORM_ADMIN = "PLATFORM_ADMIN"

CLINIC_ADMIN = "ADMIN"
CLINIC_STAFF = "STAFF"
CLINIC_ROLES = (CLINIC_ADMIN, CLINIC_STAFF)


# the password of an account created by clinic staff for an owner, until they claim it: no password
# verifies against it (an invitation link sets the first one)
INVITED_PASSWORD = ""


def normalize_email(email: str) -> str:
    return email.strip().lower()


@dataclass
class User:
    id: uuid.UUID
    email: str
    name: str
    password_hash: str
    roles: tuple[str, ...] = (ROLE_OWNER,)
    memberships: dict[str, str] = field(default_factory=dict)  # clinic id → clinic role (ADMIN / STAFF)
    created_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    # when the current ``email`` was proven (a verification link, an accepted invitation); None: not yet
    email_verified_at: datetime | None = None
    phone: str = ""  # E.164, "" when not given
    locale: str = ""  # BCP 47 language tag, e.g. "de-AT"
    time_zone: str = ""  # IANA name, for display, e.g. "Europe/Vienna"
    deleted_at: datetime | None = None  # the account was deleted (its personal data erased)

    @property
    def clinic_ids(self) -> tuple[str, ...]:
        return tuple(sorted(self.memberships))

    @property
    def email_verified(self) -> bool:
        return self.email_verified_at is not None


@dataclass
class Invitation:
    """An invitation to join a clinic; only the SHA-256 of its token is stored."""

    id: uuid.UUID
    clinic_id: uuid.UUID
    email: str
    role: str
    token_hash: str
    invited_by: uuid.UUID
    expires_at: datetime
    created_at: datetime
    accepted_at: datetime | None = None

    def check_usable(self, now: datetime) -> None:
        if self.accepted_at is not None:
            raise InvitationInvalid("this invitation was already used")
        if self.expires_at <= now:
            raise InvitationInvalid("this invitation has expired")


@dataclass(frozen=True)
class Member:
    user_id: uuid.UUID
    email: str
    name: str
    role: str
    service_account: bool = False


SERVICE_ACCOUNT_DOMAIN = "service-accounts.petpro.invalid"


def service_account_email(client_id: uuid.UUID) -> str:
    """Service accounts are users with role SERVICE and this reserved, undeliverable login name."""
    return f"{client_id}@{SERVICE_ACCOUNT_DOMAIN}"


def new_invitation_token() -> str:
    return secrets.token_urlsafe(32)


def new_link_token() -> str:
    """The secret of a link sent by mail (password reset, email verification): 256 random bits."""
    return secrets.token_urlsafe(32)


@dataclass
class Session:
    """A login session: the family of one refresh token chain.  Access tokens carry its id (``sid``)."""

    id: uuid.UUID
    user_id: uuid.UUID
    refresh_hash: str
    refresh_expires_at: datetime
    created_at: datetime
    revoked_at: datetime | None = None

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None


class Passwords:
    """argon2id hashing (OWASP parameters from argon2-cffi's defaults)."""

    def __init__(self, hasher: PasswordHasher | None = None) -> None:
        self.hasher = hasher or PasswordHasher()
        # verified against when the email is unknown, so timing does not reveal registered emails
        self._dummy = self.hasher.hash(secrets.token_urlsafe(16))

    def hash(self, password: str) -> str:
        return self.hasher.hash(password)

    def verify(self, password_hash: str | None, password: str) -> bool:
        try:
            # an unknown email or an unclaimed account: the dummy's work, never a match
            return self.hasher.verify(password_hash or self._dummy, password) and bool(password_hash)
        except (VerificationError, InvalidHashError):
            return False

    def needs_rehash(self, password_hash: str) -> bool:
        return self.hasher.check_needs_rehash(password_hash)


def new_refresh_secret() -> str:
    return secrets.token_urlsafe(32)


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def split_refresh_token(token: str) -> tuple[uuid.UUID, str]:
    """Refresh tokens are ``<session uuid>.<secret>``; anything else is invalid."""
    sid, _, secret = token.partition(".")
    try:
        return uuid.UUID(sid), secret
    except ValueError:
        raise TokenInvalid("refresh token is malformed") from None


def secrets_match(stored_hash: str, secret: str) -> bool:
    return hmac.compare_digest(stored_hash, hash_secret(secret))
