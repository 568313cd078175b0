"""Links sent by mail: single-use, expiring tokens for a password reset or an email verification.
Only the SHA-256 of a token is stored; the token itself exists in the mail alone."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from auth_svc.domain.errors import LinkTokenInvalid

PASSWORD_RESET = "PASSWORD_RESET"
EMAIL_VERIFICATION = "EMAIL_VERIFICATION"
LINK_PURPOSES = (PASSWORD_RESET, EMAIL_VERIFICATION)


@dataclass
class LinkToken:
    """One link: for ``purpose``, of ``user_id``, mailed to ``email``.  A newer link of the same
    account and purpose replaces it (its token is then unknown)."""

    id: uuid.UUID
    user_id: uuid.UUID
    purpose: str
    email: str
    token_hash: str
    expires_at: datetime
    created_at: datetime
    used_at: datetime | None = None

    def check_usable(
        self, now: datetime, *, user_id: uuid.UUID | None = None, email: str | None = None
    ) -> None:
        """Refuse a used or expired link, or one of another account (``user_id``) or another address
        (``email``: the account's email changed since, or the request names another account)."""
        if (user_id is not None and user_id != self.user_id) or (email is not None and email != self.email):
            raise LinkTokenInvalid(
                "this link was issued for another account or email address", reason="LINK_TOKEN_OTHER_ACCOUNT"
            )
        if self.used_at is not None:
            raise LinkTokenInvalid("this link was already used; ask for a new one", reason="LINK_TOKEN_USED")
        if self.expires_at <= now:
            raise LinkTokenInvalid("this link has expired; ask for a new one", reason="LINK_TOKEN_EXPIRED")


def unknown_link() -> LinkTokenInvalid:
    return LinkTokenInvalid(
        "unknown link: it was never issued, or a newer one replaced it", reason="LINK_TOKEN_UNKNOWN"
    )
