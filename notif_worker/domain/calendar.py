"""The owner's calendar: one event per booking (a stable UID, the booking's version as its SEQUENCE),
and the private feed's token (unguessable, shown once, kept only as its SHA-256)."""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime

from notif_worker.domain.notices import BookingNotice

FEED_PATH = "/v1/me/calendar.ics"
TOKEN_BYTES = 32  # 256 bits of randomness, 43 URL-safe characters


def event_uid(booking_id: str) -> str:
    """The calendar event's UID: one per booking, whatever happens to it (RFC 5545 3.8.4.7)."""
    return f"{booking_id}@petpro.dev"


def new_feed_token() -> str:
    return secrets.token_urlsafe(TOKEN_BYTES)


def token_hash(token: str) -> bytes:
    """What is stored of a feed token: a high-entropy secret needs no salt or slow hash."""
    return hashlib.sha256(token.encode()).digest()


@dataclass(frozen=True)
class FeedToken:
    """A freshly made feed token, as shown once to its owner."""

    user_id: uuid.UUID
    token: str
    created_at: datetime

    @property
    def feed_path(self) -> str:
        return f"{FEED_PATH}?token={self.token}"


@dataclass(frozen=True)
class CalendarFeed:
    """An owner's upcoming bookings, as the notices of their last applied event."""

    user_id: uuid.UUID
    bookings: tuple[BookingNotice, ...]
