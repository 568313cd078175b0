"""What a booking event is to the notifications (BookingNotice), the owner's preferences, what
recording an event did, reminders and the rows the channels write.  Pure Python."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

from petpro.errors import InvalidArgument


class PoisonEvent(InvalidArgument):
    """An event that can never be processed (undecodable, missing fields): straight to the DLQ."""

    reason = "POISON_EVENT"


class MessageRefused(Exception):
    """A channel refused a message for good (e.g. the mail server's 5xx for the address): trying again
    cannot help, so the event goes to the dead-letter topic at once."""


class DeviceGone(Exception):
    """The push provider says the device's token is no longer valid (FCM UNREGISTERED or an invalid
    token, APNs 410 Unregistered or 400 BadDeviceToken): the device is removed, never retried."""


class ChannelFailed(Exception):
    def __init__(self, channel: str, error: str) -> None:
        super().__init__(f"{channel}: {error}")
        self.channel = channel
        self.error = error


@dataclass(frozen=True)
class PaymentRequest:
    """The payment link of a hold clinic staff made for an owner, to be mailed to them once."""

    lock_id: uuid.UUID
    user_id: uuid.UUID
    email: str
    name: str
    payment_url: str
    service_name: str
    start: datetime
    amount: str
    expires_at: datetime


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
class Device:
    """A device to push to: its row id (the delivery's recipient), platform (ANDROID, IOS, WEB) and
    the provider's token."""

    id: uuid.UUID
    platform: str
    token: str


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
    owner_locale: str = ""  # BCP 47 ("de-DE"); empty: the clinic's, else English (see wording.locale_of)
    clinic_locale: str = ""
    clinic_address: str = ""
    # the assignment (docs/design/scheduling.md): the provider and the resource items, names included
    provider_id: str = ""
    provider_name: str = ""
    resources: tuple[tuple[str, str, str], ...] = ()  # (resource id, name, type)
    pay_at_clinic: bool = False  # booked by staff, to be paid at the clinic

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
    reminders_sms: bool = True
    changes_sms: bool = True

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
    devices: tuple[Device, ...] = ()  # the owner's devices whose push of this event was claimed


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


class PhoneOptedOut(MessageRefused):
    """The SMS provider says the recipient opted out (replied STOP; Twilio 21610): the number is
    marked opted out and gets no more texts."""


class SendOutcomeUnknown(Exception):
    """The provider may or may not have taken the message: it did not answer within the timeout, or
    the connection broke after the request went out (a 5xx from a gateway).  Sending it again at once
    could send it twice, so it is not retried: the claim stays "sending" and the stale-text sweep asks
    the provider whether it went once the lease is over."""
