"""Notification domain: what a confirmed booking tells the owner and the clinic.  Pure Python."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

from petpro.errors import InvalidArgument

# ISO 4217 currencies without minor units; everything else we sell in has two
ZERO_DECIMAL = {"JPY", "KRW", "VND", "CLP", "ISK", "HUF", "TWD", "UGX", "XAF", "XOF"}


class PoisonEvent(InvalidArgument):
    """An event that can never be processed (undecodable, missing fields): straight to the DLQ."""

    reason = "POISON_EVENT"


class FeedRace(Exception):
    """Two workers appended the same event concurrently; the transaction is rolled back and the
    caller's retry finds the event already there."""


class ChannelFailed(Exception):
    def __init__(self, channel: str, error: str) -> None:
        super().__init__(f"{channel}: {error}")
        self.channel = channel
        self.error = error


@dataclass(frozen=True)
class FeedRow:
    """One event of a clinic's feed: its per-clinic cursor and the serialized ClinicEvent."""

    cursor: int
    payload: bytes


@dataclass(frozen=True)
class InboxRow:
    id: uuid.UUID
    user_id: uuid.UUID
    event_id: uuid.UUID
    title: str
    body: str
    data: dict[str, str]
    created_at: datetime


@dataclass(frozen=True)
class DeviceRow:
    id: uuid.UUID
    user_id: uuid.UUID
    platform: str
    created_at: datetime


@dataclass(frozen=True)
class BookingNotice:
    event_id: uuid.UUID
    occurred_at: datetime
    booking_id: str
    clinic_id: uuid.UUID
    clinic_name: str
    clinic_time_zone: str
    service_name: str
    start: datetime
    end: datetime
    pet_name: str
    pet_species: str
    owner_user_id: uuid.UUID
    owner_email: str
    owner_name: str
    amount_minor: int
    currency: str

    @property
    def local_start(self) -> datetime:
        return self.start.astimezone(ZoneInfo(self.clinic_time_zone))

    @property
    def local_end(self) -> datetime:
        return self.end.astimezone(ZoneInfo(self.clinic_time_zone))

    @property
    def reference(self) -> str:
        return self.booking_id.split("-")[0].upper()


def format_money(minor: int, currency: str) -> str:
    if currency.upper() in ZERO_DECIMAL:
        return f"{minor:,} {currency.upper()}"
    return f"{Decimal(minor) / 100:,.2f} {currency.upper()}"


def when(n: BookingNotice) -> str:
    start, end = n.local_start, n.local_end
    return f"{start:%A, %d %B %Y}, {start:%H:%M}\u2013{end:%H:%M} ({start.tzname()})"


def push_message(n: BookingNotice) -> tuple[str, str, dict[str, str]]:
    title = f"Booking confirmed: {n.service_name}"
    body = f"{n.pet_name} at {n.clinic_name}, {n.local_start:%a %d %b %H:%M}"
    data = {"booking_id": n.booking_id, "clinic_id": str(n.clinic_id), "type": "booking.created"}
    return title, body, data
