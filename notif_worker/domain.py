"""Notification domain: what a booking's lifecycle events tell the owner (email, push, reminders, by
their preferences) and the clinic (its feed).  Pure Python."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Literal
from zoneinfo import ZoneInfo

from petpro.errors import InvalidArgument

# ISO 4217 currencies without minor units; everything else we sell in has two
ZERO_DECIMAL = {"JPY", "KRW", "VND", "CLP", "ISK", "HUF", "TWD", "UGX", "XAF", "XOF"}


class PoisonEvent(InvalidArgument):
    """An event that can never be processed (undecodable, missing fields): straight to the DLQ."""

    reason = "POISON_EVENT"


class MessageRefused(Exception):
    """A channel refused a message for good (e.g. the mail server's 5xx for the address): trying again
    cannot help, so the event goes to the dead-letter topic at once."""


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
    # the lifecycle (booking.created → cancelled | rescheduled | completed | no_show), see adapters/codecs.py
    kind: str = "created"
    version: int = 1
    refund_minor: int = 0
    reason: str = ""
    previous_start: datetime | None = None
    actor: str = ""  # OWNER / CLINIC for changes
    reminder_offsets: tuple[int, ...] = ()  # minutes before the start (booking.created only)

    @property
    def category(self) -> str:
        """Preferences apply per category; confirmations and cancellations are transactional (always sent)."""
        if self.kind == "reminder":
            return "reminders"
        return "transactional" if self.kind in ("created", "cancelled") else "changes"

    @property
    def local_start(self) -> datetime:
        return self.start.astimezone(ZoneInfo(self.clinic_time_zone))

    @property
    def local_end(self) -> datetime:
        return self.end.astimezone(ZoneInfo(self.clinic_time_zone))

    @property
    def reference(self) -> str:
        return self.booking_id.split("-")[0].upper()


@dataclass(frozen=True)
class Preferences:
    """Per category and channel; all on until the owner switches something off."""

    reminders_email: bool = True
    reminders_push: bool = True
    changes_email: bool = True
    changes_push: bool = True

    def wants(self, category: str, channel: str) -> bool:
        """Transactional messages (confirmation, cancellation) are always sent."""
        if category == "transactional":
            return True
        return bool(getattr(self, f"{category}_{channel}"))


# what an event does to its booking's reminders: ("schedule", offsets in minutes), ("move", ()) after a
# reschedule, ("drop", ()) when the booking ends otherwise, or None
ReminderChange = tuple[str, tuple[int, ...]] | None


@dataclass(frozen=True)
class Recorded:
    """What recording an event did and left to do.  ``outcome``: "applied" (the booking's next version,
    or a copy of the last one applied), "copy" (of an older version: only the missing deliveries were
    done) or "parked" (an earlier version is still on its way: nothing else was done).  Left to do: send
    the email (its delivery claimed), publish the feed row (committed), apply the booking's next event
    (it was parked, waiting)."""

    outcome: Literal["applied", "copy", "parked"]
    email_due: bool
    feed: FeedRow | None
    parked: tuple[str, bytes] | None


@dataclass(frozen=True)
class Reminder:
    """A due reminder of a booking, with what the message needs."""

    id: uuid.UUID
    booking_id: str
    offset_minutes: int
    due_at: datetime
    notice: BookingNotice


def reminder_due(start: datetime, offset_minutes: int) -> datetime:
    return start - timedelta(minutes=offset_minutes)


def format_money(minor: int, currency: str) -> str:
    if currency.upper() in ZERO_DECIMAL:
        return f"{minor:,} {currency.upper()}"
    return f"{Decimal(minor) / 100:,.2f} {currency.upper()}"


def when(n: BookingNotice) -> str:
    start, end = n.local_start, n.local_end
    return f"{start:%A, %d %B %Y}, {start:%H:%M}\u2013{end:%H:%M} ({start.tzname()})"


def push_message(n: BookingNotice) -> tuple[str, str, dict[str, str]]:
    at = f"{n.local_start:%a %d %b %H:%M}"
    if n.kind == "cancelled":
        title = f"Booking cancelled: {n.service_name}"
        refund = f"refund {format_money(n.refund_minor, n.currency)}" if n.refund_minor else "no refund"
        body = f"{n.pet_name} at {n.clinic_name}, {at} — {refund}"
    elif n.kind == "rescheduled":
        title = f"Booking moved: {n.service_name}"
        body = f"{n.pet_name} at {n.clinic_name}, now {at}"
    elif n.kind == "reminder":
        title = f"Reminder: {n.service_name} for {n.pet_name}"
        body = f"{n.clinic_name}, {at}"
    elif n.kind in ("completed", "no_show"):
        title = f"Visit {'completed' if n.kind == 'completed' else 'missed'}: {n.service_name}"
        body = f"{n.pet_name} at {n.clinic_name}, {at}"
    else:
        title = f"Booking confirmed: {n.service_name}"
        body = f"{n.pet_name} at {n.clinic_name}, {at}"
    data = {"booking_id": n.booking_id, "clinic_id": str(n.clinic_id), "type": f"booking.{n.kind}"}
    return title, body, data


def change_mail(n: BookingNotice) -> tuple[str, str]:
    """Subject and plain text of a lifecycle email (cancelled with its refund, new time after a move)."""
    hello = f"Hello {n.owner_name or 'there'},\n\n"
    facts = (
        f"  Clinic:     {n.clinic_name}\n  Service:    {n.service_name}\n  Pet:        {n.pet_name}\n"
        f"  When:       {when(n)}\n  Reference:  {n.reference}\n"
    )
    if n.kind == "cancelled":
        by = "the clinic" if n.actor == "CLINIC" else "you"
        refund = (
            f"We refund {format_money(n.refund_minor, n.currency)} to your card."
            if n.refund_minor
            else "Under the clinic's cancellation policy, nothing is refunded."
        )
        reason = f"Reason: {n.reason}\n" if n.reason else ""
        return (
            f"Booking cancelled: {n.service_name} for {n.pet_name}",
            f"{hello}your booking was cancelled by {by}.\n\n{facts}{reason}\n{refund}\n",
        )
    if n.kind == "rescheduled":
        before = ""
        if n.previous_start is not None:
            before = f"  Was:        {n.previous_start.astimezone(ZoneInfo(n.clinic_time_zone)):%A, %d %B %Y, %H:%M}\n"
        return (
            f"Booking moved: {n.service_name} for {n.pet_name} on {n.local_start:%d %b %Y %H:%M}",
            f"{hello}your booking has a new time.\n\n{facts}{before}",
        )
    if n.kind == "reminder":
        return (
            f"Reminder: {n.service_name} for {n.pet_name} on {n.local_start:%d %b %Y %H:%M}",
            f"{hello}a reminder of your upcoming visit.\n\n{facts}",
        )
    outcome = "completed" if n.kind == "completed" else "recorded as missed (no-show)"
    return (
        f"Visit {outcome}: {n.service_name} for {n.pet_name}",
        f"{hello}the clinic marked your visit {outcome}.\n\n{facts}",
    )
