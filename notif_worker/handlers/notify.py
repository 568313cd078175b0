"""Notifying one booking event: the clinic feed, the owner's push (inbox and devices), email and text, each
at most once in effect (keyed by event id, channel and recipient), in the booking's order across the lifecycle
topics (an event whose predecessor has not been applied yet is parked until it has), retried with
back-off, and given up (ChannelFailed → the dead-letter topic) after the last attempt or at once when
the channel refused the message for good."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import TypeVar

from notif_worker.domain import BookingNotice, ChannelFailed, Device, Preferences, push_message
from notif_worker.handlers.accounts import AccountErasure
from notif_worker.handlers.devices import DEFAULT_RETRY, DevicePushes, Retry
from notif_worker.handlers.reminders import reminder_change
from notif_worker.handlers.sms import SmsHandlers
from notif_worker.ports import FeedEncoder, FeedPublisher, Mailer, PushProvider, UnitOfWork

log = logging.getLogger("notif_worker")
T = TypeVar("T")
# decodes a parked event (topic, payload) again
Decode = Callable[[str, bytes], BookingNotice]


class NotifyHandlers:
    """``repos`` hands out a repository whose every statement is its own transaction (the autocommit
    reader): recording an event is one statement, and so is an email's outcome."""

    def __init__(
        self,
        repos: UnitOfWork,
        mailer: Mailer,
        push: PushProvider,
        encode_feed: FeedEncoder,
        publish_feed: FeedPublisher,
        retry: Retry = DEFAULT_RETRY,
        *,
        devices: DevicePushes | None = None,
        sms: SmsHandlers | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        reminder_offsets: tuple[int, ...] = (2880, 120),
        accounts: AccountErasure | None = None,
    ) -> None:
        self.repos = repos
        self.mailer = mailer
        self.push_provider = push
        self.encode_feed = encode_feed
        self.publish_feed = publish_feed
        self.retry = retry
        self.devices = devices or DevicePushes((), retry)
        self.sms = sms
        self.clock = clock
        self.reminder_offsets = reminder_offsets
        self.accounts = accounts

    async def notify(
        self, n: BookingNotice, topic: str = "", payload: bytes = b"", decode: Decode | None = None
    ) -> None:
        """All channels for one event, in the booking's order: an event whose predecessor (version - 1)
        has not been applied yet is parked in the database (``topic``, ``payload``) and applied right
        after it, by whichever worker applies the predecessor (``decode`` reads it again).  Raises
        ChannelFailed when a step exhausted its retries."""
        parked = await self._notify_one(n, topic, payload)
        while parked is not None and decode is not None:
            parked = await self._notify_one(decode(*parked), *parked)  # it was waiting for this one

    async def _notify_one(self, n: BookingNotice, topic: str, payload: bytes) -> tuple[str, bytes] | None:
        # the first erasure check is asked on the record's connection, just before it (_record)
        email_due, parked, devices, outcome, gone = await self._with_retry(
            "feed+push", lambda: self._record(n, topic, payload)
        )
        if gone:  # a deleted account: the clinic's feed row only, without personal data
            n = replace(n, owner_email="", owner_name="", pet_name="")
        if self.accounts is not None:  # erased meanwhile (or just now): what this event wrote goes too
            digests = await self.accounts.erased(n.owner_user_id)
            if digests is not None:
                await self.accounts.erase_again(n.owner_user_id, digests)
                if not gone:
                    return parked  # the email and pushes are not sent to a deleted account
        failed: ChannelFailed | None = None
        if devices:
            try:
                await self._push_devices(n, devices)
            except ChannelFailed as exc:  # the email still goes; the event fails after it
                failed = exc
        if email_due:
            await self._with_retry("email", lambda: self._send_email(n))
        if self.sms is not None and outcome != "parked" and not gone:
            sms = self.sms
            try:
                await self._with_retry("sms", lambda: sms.deliver(n))
            except ChannelFailed as exc:  # the database failed: the claimed text is the sweep's later
                log.warning("text failed for now: %s", exc, extra={"fields": {"booking_id": n.booking_id}})
        if failed is not None:
            raise failed
        return parked

    async def _with_retry(self, channel: str, step: Callable[[], Awaitable[T]]) -> T:
        return await self.retry.run(channel, step)

    async def _push_devices(self, n: BookingNotice, devices: tuple[Device, ...]) -> None:
        """The event's push to each claimed device, its outcome recorded (a device whose token is gone
        is removed; its delivery stays failed)."""
        title, body, data = push_message(n)
        for device in devices:
            if not self.devices.serves(device):
                continue  # no provider configured for its platform: the inbox has it
            recipient = str(device.id)
            try:
                outcome = await self.devices.send(device, title, body, data)
            except Exception as exc:
                async with self.repos() as repo:
                    await repo.finish_delivery(
                        n.event_id, "device", recipient, ok=False, error=str(exc)[:1000]
                    )
                raise
            async with self.repos() as repo:
                if outcome == "gone":
                    await repo.remove_device(device.id)
                await repo.finish_delivery(
                    n.event_id,
                    "device",
                    recipient,
                    ok=outcome == "sent",
                    error=None if outcome == "sent" else "token gone",
                )

    async def _record(
        self, n: BookingNotice, topic: str, payload: bytes
    ) -> tuple[bool, tuple[str, bytes] | None, tuple[Device, ...], str, bool]:
        """What lives in our database, in one statement (one round trip, its own transaction; the
        clinic's counter row is locked only inside the database): the booking's order, the clinic feed
        row, the push (inbox) and the email's delivery claim.  Returns whether the email still has to
        be sent, the parked next event of this booking, if one was waiting, the devices claimed, the
        outcome, and whether the owner's account was erased (asked first, on the same connection: an
        erased owner's event writes the clinic's feed row only, without personal data)."""
        async with self.repos() as repo:
            gone = self.accounts is not None and await repo.erased_digests(n.owner_user_id) is not None
            if gone:
                n = replace(n, owner_email="", owner_name="", pet_name="")
            prefs = Preferences()
            if (
                n.category != "transactional"
            ):  # confirmations and cancellations go out whatever the preferences
                prefs = await repo.preferences(n.owner_user_id)
            push = None
            if prefs.wants(n.category, "push") and not gone:
                push = self.push_provider.inbox_row(n, *push_message(n))
            recorded = await repo.record(
                n,
                push=push,
                email=prefs.wants(n.category, "email") and not gone,
                feed_type=f"booking.{n.kind}",
                feed_tail=self.encode_feed(n, 0),
                reminders=reminder_change(n, self.reminder_offsets),
                park=(topic, payload),
                now=self.clock(),
            )
        if recorded.feed is not None:
            await self.publish_feed(n.clinic_id, recorded.feed)  # committed: the statement was its own
        return recorded.email_due, recorded.parked, recorded.devices, recorded.outcome, gone

    async def _send_email(self, n: BookingNotice) -> None:
        # the outcome is one UPDATE: on the autocommit connection it is its own transaction (one round
        # trip instead of BEGIN, UPDATE, COMMIT)
        try:
            await self.mailer.send(n)
        except Exception as exc:
            async with self.repos() as repo:
                await repo.finish_delivery(
                    n.event_id, "email", n.owner_email, ok=False, error=str(exc)[:1000]
                )
            raise
        async with self.repos() as repo:
            await repo.finish_delivery(n.event_id, "email", n.owner_email, ok=True)

    async def release_stale_parked(self, decode: Decode, max_wait: timedelta) -> int:
        """Apply the parked events that should not wait any longer: parked longer than ``max_wait`` (the
        predecessor presumed lost, e.g. a broker that lost acknowledged messages: a late notice beats
        none), or whose predecessor was applied while they were being parked.  Never a parked event
        whose predecessor may still come within ``max_wait``."""
        async with self.repos() as repo:
            due = await repo.parked_due(self.clock() - max_wait)
        released = 0
        for booking_id, version in due:
            async with self.repos() as repo:
                parked = await repo.release_parked(booking_id, version)
            if parked is None:  # another replica took it
                continue
            log.warning(
                "applying a parked event", extra={"fields": {"booking_id": booking_id, "version": version}}
            )
            await self.notify(decode(*parked), *parked, decode)
            released += 1
        return released
