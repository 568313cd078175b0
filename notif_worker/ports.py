"""The ports the notification use cases depend on: the repository of one unit of work, the unit of
work, the delivery channels (mail, the inbox, the push providers of devices), the calendar feed's
format, and the clinic feed's live fan-out and event format."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from datetime import datetime
from typing import Any, Protocol

from notif_worker.domain import (
    BookingNotice,
    Device,
    DeviceRow,
    FeedRow,
    InboxRow,
    PaymentRequest,
    Preferences,
    QuietHours,
    Recorded,
    Reminder,
    ReminderChange,
)
from notif_worker.domain.sms import ClinicSms, SmsClaim, SmsPhone, StaleText


class NotifRepository(Protocol):
    async def record(
        self,
        n: BookingNotice,
        *,
        push: InboxRow | None,
        email: bool,
        feed_type: str,
        feed_tail: bytes,
        reminders: ReminderChange,
        park: tuple[str, bytes],
        now: datetime,
    ) -> Recorded:
        """One event, atomically, by its place in its booking's order (version 1 first, then applied + 1):
        - the next version (or a copy of the last one applied): the progress, the parked successor
          taken, the reminders' change, the push (its delivery recorded as delivered, with ``push``'s
          inbox row), the email's claim (if ``email``) and the clinic feed row (``feed_tail``: the clinic
          event encoded with cursor 0; the row's payload is ``cursor_field(cursor) + feed_tail``, the
          cursor the clinic's next);
        - a copy of an older version: only what is missing of the push and the devices' pushes, the
          email's claim (unless it was delivered) and the feed row; no progress, no reminders, no
          calendar change;
        - a version after a missing one: parked (``park``: its topic and payload, at ``now``), nothing
          else written.
        Every delivery is recorded once per (event, channel, recipient); the email is due when its
        claim is new or its last send failed."""
        ...

    async def claim_delivery(self, event_id: uuid.UUID, channel: str, recipient: str) -> bool:
        """Claim one delivery outside an event (a staff payment link): True when it is new or its last
        send failed, False when it was delivered or is being delivered."""
        ...

    async def finish_delivery(
        self, event_id: uuid.UUID, channel: str, recipient: str, *, ok: bool, error: str | None = None
    ) -> None:
        """The outcome of a claimed delivery: delivered, or failed with ``error`` (claimable again)."""
        ...

    async def parked_due(self, parked_before: datetime, limit: int = 50) -> list[tuple[str, int]]:
        """(booking, version) of the parked events to apply now: parked before ``parked_before`` (their
        predecessor presumed lost) or whose predecessor has been applied; lowest version per booking."""
        ...

    async def release_parked(self, booking_id: str, version: int) -> tuple[str, bytes] | None:
        """Take a parked event out (topic, payload), its booking's progress moved to just before it
        (never back); None when it is not parked (any more)."""
        ...

    async def clinic_events_after(self, clinic_id: uuid.UUID, after: int, limit: int) -> list[FeedRow]:
        """The clinic's feed rows after cursor ``after``, in cursor order."""
        ...

    async def add_inbox(self, row: InboxRow) -> bool:
        """False when the owner's inbox has a row of this event already."""
        ...

    async def list_inbox(
        self, user_id: uuid.UUID, after: tuple[str, ...] | None, limit: int
    ) -> list[InboxRow]:
        """Newest first (created_at, id), after the page token's (created_at iso, id)."""
        ...

    async def upsert_device(self, user_id: uuid.UUID, platform: str, token: str) -> DeviceRow:
        """One device per (user, token): registering it again keeps its id and takes the new platform.
        A token belongs to the user who registered it last: other users' devices with it go."""
        ...

    async def devices_of(self, user_id: uuid.UUID) -> list[Device]:
        """The user's devices, oldest first."""
        ...

    async def remove_device(self, device_id: uuid.UUID) -> bool:
        """False when there was no such device."""
        ...

    # reminders
    async def claim_due_reminder(self, now: datetime) -> Reminder | None:
        """The most overdue pending reminder of a booking not started yet, locked with SKIP LOCKED until
        the transaction ends (another replica claims the next one)."""
        ...

    async def mark_reminder_sent(self, reminder_id: uuid.UUID, now: datetime) -> None: ...

    async def defer_reminder(self, reminder_id: uuid.UUID, due_at: datetime) -> None:
        """A claimed reminder falls due again at ``due_at`` (the end of quiet hours)."""
        ...

    async def drop_reminder(self, reminder_id: uuid.UUID) -> None:
        """A claimed reminder is not sent (quiet hours last until the visit)."""
        ...

    async def quiet_hours(self, clinic_id: uuid.UUID) -> QuietHours | None:
        """The clinic's own quiet hours; None when it set none (the platform default applies)."""
        ...

    async def set_quiet_hours(self, clinic_id: uuid.UUID, quiet: QuietHours) -> None: ...

    # the calendar feed
    async def upcoming_bookings(self, user_id: uuid.UUID, now: datetime, limit: int) -> list[BookingNotice]:
        """The owner's bookings not ended at ``now`` and not cancelled (nor completed or missed), as
        their last applied event left them, soonest first."""
        ...

    async def feed_owner(self, token_hash: bytes) -> uuid.UUID | None:
        """The owner of the calendar feed token with that hash; None when there is none (revoked)."""
        ...

    async def create_feed_token(self, user_id: uuid.UUID, token_hash: bytes, now: datetime) -> bool:
        """False (and nothing changed) when the user has a token already."""
        ...

    async def replace_feed_token(self, user_id: uuid.UUID, token_hash: bytes, now: datetime) -> None:
        """The user's token becomes this one (made when they had none)."""
        ...

    async def revoke_feed_token(self, user_id: uuid.UUID) -> bool:
        """False when the user had no token."""
        ...

    # preferences
    async def preferences(self, user_id: uuid.UUID) -> Preferences:
        """The owner's preferences; all on for an owner who never changed them."""
        ...

    async def update_preferences(self, user_id: uuid.UUID, changes: dict[str, bool]) -> Preferences: ...

    # SMS
    async def sms_phone(self, user_id: uuid.UUID) -> SmsPhone | None:
        """The owner's number for texts (pending, verified or opted out); None when they gave none."""
        ...

    async def save_sms_phone(self, p: SmsPhone) -> None:
        """The owner's number as given (one per owner: a new one replaces the old)."""
        ...

    async def set_phone_opted_out(self, phone: str, opted_out: bool) -> int:
        """STOP (``opted_out``): every owner's VERIFIED ``phone`` becomes OPTED_OUT; START: back to
        VERIFIED.  The number of owners changed."""
        ...

    async def clinic_sms(self, clinic_id: uuid.UUID) -> ClinicSms | None:
        """The clinic's SMS setting; None when it set none (SMS off)."""
        ...

    async def set_clinic_sms(self, clinic_id: uuid.UUID, s: ClinicSms) -> None: ...

    async def sms_used(self, clinic_id: uuid.UUID, month: str) -> int:
        """Texts counted against the clinic's cap in ``month`` ("2026-12")."""
        ...

    async def claim_sms(
        self,
        key: uuid.UUID,
        phone: str,
        body: str,
        clinic_id: uuid.UUID,
        *,
        month: str,
        cap: int,
        owner_limit: int,
        since: datetime,
        now: datetime,
    ) -> SmsClaim:
        """Claim the text ``key`` (``body``) to ``phone``: a delivery of channel "sms" marked "sending"
        at ``now``.  A new claim is counted against the owner's limit (``owner_limit`` texts claimed
        since ``since``) and the clinic's ``cap`` for ``month``, refused past either ("limited" /
        "capped", given up for good); a delivered or refused one is "done"; one claimed before and not
        delivered (being sent, its outcome unknown, or failed) is "busy": only the stale-text sweep
        sends it again, after asking the provider (a send that may have gone is never repeated blind)."""
        ...

    async def renew_sms_claim(self, key: uuid.UUID, phone: str, held: datetime, now: datetime) -> bool:
        """Start a send of the text ``key``: its lease (``claimed_at``) moves from ``held`` to ``now``
        and it is "sending" again.  False, changing nothing, when its lease is no longer ``held`` (the
        sweep or another worker took it over) or it was settled (delivered, refused): then the caller
        must not send.  A fencing token: of two holders of the same lease only one renews it."""
        ...

    async def sms_outcome_unknown(self, key: uuid.UUID, phone: str, error: str) -> None:
        """A send of the text ``key`` whose outcome is unknown (no answer in time): a try counted, the
        error kept, the text left "sending" for the sweep (which asks the provider after the lease)."""
        ...

    async def stale_texts(self, claimed_before: datetime, limit: int = 20) -> list[StaleText]:
        """Texts still "sending" (their worker stopped, or the outcome of its send is unknown) or failed
        (fewer than 5 tries) whose last send started before ``claimed_before``, oldest first.  Not
        locked: the sweep takes each with :meth:`renew_sms_claim`."""
        ...

    async def refuse_delivery(self, event_id: uuid.UUID, channel: str, recipient: str, error: str) -> None:
        """A claimed delivery given up for good (never claimed again)."""
        ...

    # a deleted account (account.deleted) and the owner's data export
    async def mark_erasing(self, user_id: uuid.UUID, event_id: uuid.UUID, digests: list[str]) -> None:
        """From this commit on the account counts as erased (``erased_digests``); the first mark stays."""
        ...

    async def record_erased(self, user_id: uuid.UUID, at: datetime) -> bool:
        """Record the marked account's erasure done; False when it was before (or never marked)."""
        ...

    async def erased_digests(self, user_id: uuid.UUID) -> list[str] | None:
        """The email digests of an account marked erased (done or under way); None otherwise."""
        ...

    async def erase_user(self, user_id: uuid.UUID, digests: list[str]) -> None:
        """Inbox, devices, preferences, calendar token and rows deleted; the bookings' pending reminders
        and parked events dropped; email deliveries to the digests' addresses re-addressed; the clinic
        feed rows of the user's bookings without owner name, email and pet name."""
        ...

    async def user_export(self, user_id: uuid.UUID, email: str) -> dict[str, Any]:
        """inbox, deliveries (to ``email``, the push inbox and the user's devices), devices,
        preferences, calendar_feed: JSON-ready."""
        ...


UnitOfWork = Callable[[], AbstractAsyncContextManager[NotifRepository]]


class Mailer(Protocol):
    async def send(self, notice: BookingNotice) -> None: ...


class PaymentRequestMail(Protocol):
    """Mails an owner the payment link of a hold staff made for them; MessageRefused: never deliverable."""

    async def send_payment_request(self, r: PaymentRequest) -> None: ...


class PushProvider(Protocol):
    """The in-app push: the inbox row a push consists of (GET /v1/me/notifications), recorded with the
    event in one statement; the devices get it from the DevicePush providers after the commit."""

    def inbox_row(self, notice: BookingNotice, title: str, body: str, data: dict[str, str]) -> InboxRow: ...


class DevicePush(Protocol):
    """A push provider for devices of some platforms (FCM: Android and web; APNs: iOS).  ``send``
    raises DeviceGone when the provider says the token is no longer valid (the device is removed),
    MessageRefused when it refuses this message for good, anything else for a transient failure
    (retried with back-off)."""

    platforms: frozenset[str]

    async def send(self, device: Device, title: str, body: str, data: dict[str, str]) -> None: ...


class SmsSender(Protocol):
    """Texts through the provider (Twilio's Messages API).  ``send`` returns the provider's message id;
    raises MessageRefused for good refusals (the number is invalid), PhoneOptedOut when the recipient
    unsubscribed (replied STOP), SendOutcomeUnknown when the message may have been taken (no answer
    within ``timeout`` seconds, a connection broken mid-request: never retried blind), anything else
    for a failure the provider answered (it did not take the message: retried with back-off)."""

    timeout: float  # seconds a call may take at most: a text's lease must be well above it

    async def send(self, to: str, body: str) -> str: ...

    async def sent_since(self, to: str, body: str, since: datetime) -> str | None:
        """The id of a message with exactly this body to ``to``, created (taken by the provider, sent
        or still queued) at or after ``since``; None when there is none."""
        ...

    def valid_webhook(self, url: str, params: dict[str, str], signature: str) -> bool:
        """Whether an incoming-message webhook was signed by the provider with our credentials."""
        ...


# an owner's calendar feed (iCalendar) of their bookings, in a locale
CalendarFeedRenderer = Callable[[list[BookingNotice], str], bytes]

# the clinic event serialised with its cursor (protobuf ClinicEvent, see notif_worker/adapters/codecs.py); with
# cursor 0 the cursor is left out and ``events.cursor_field(c) + that`` is the encoding with cursor c
FeedEncoder = Callable[[BookingNotice, int], bytes]
# the cursor of a serialized clinic event (live messages carry only the payload)
FeedCursor = Callable[[bytes], int]
# publishes a committed feed row to every replica's live subscribers
FeedPublisher = Callable[[uuid.UUID, FeedRow], Awaitable[None]]
# subscribe(clinic_id) → (queue of serialized clinic events, unsubscribe)
FeedSubscribe = Callable[[uuid.UUID], Awaitable[tuple[asyncio.Queue[bytes], Callable[[], Awaitable[None]]]]]


class LiveFanout(Protocol):
    """Live fan-out of committed feed rows to the subscribers on every replica (Redis pub/sub)."""

    async def publish(self, clinic_id: uuid.UUID, row: FeedRow) -> None: ...

    async def subscribe(
        self, clinic_id: uuid.UUID
    ) -> tuple[asyncio.Queue[bytes], Callable[[], Awaitable[None]]]: ...

    async def run(self) -> None:
        """Receive and dispatch until cancelled (a background task)."""
        ...
