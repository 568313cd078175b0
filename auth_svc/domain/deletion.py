"""Account deletion: what is left of a deleted account, and the event that tells the other services."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterable
from dataclasses import replace
from datetime import datetime

from auth_svc.domain.accounts import User, normalize_email

# the domain no address can have (RFC 2606): a deleted account's email, unique per account, so the
# real address is free to register anew
ERASED_DOMAIN = "erased.invalid"
# no argon2 hash looks like this: no password ever verifies against it
NO_PASSWORD = "!deleted"


def erased(user: User, at: datetime) -> User:
    """The account as deletion leaves it: no personal data, no usable password, no roles."""
    return replace(
        user,
        email=f"{user.id}@{ERASED_DOMAIN}",
        name="",
        password_hash=NO_PASSWORD,
        roles=(),
        memberships={},
        email_verified_at=None,
        phone="",
        locale="",
        time_zone="",
        deleted_at=at,
    )


def email_digests(emails: Iterable[str]) -> list[str]:
    """Hex SHA-256 of each distinct address (lower-cased), sorted: what AccountDeleted carries instead
    of the addresses, for payment and notif to find what they filed by email."""
    return sorted({hashlib.sha256(normalize_email(e).encode()).hexdigest() for e in emails if e})


def deletion_event_id(user_id: uuid.UUID) -> uuid.UUID:
    """One AccountDeleted per account, whatever the retries: the event id is derived from the user."""
    return uuid.uuid5(uuid.NAMESPACE_URL, f"petpro:account-deleted:{user_id}")
