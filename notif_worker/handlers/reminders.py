"""Reminders of upcoming visits: what a booking event does to its booking's reminders (made at
confirmation, moved with a reschedule, dropped when the booking ends otherwise), and sending the due
ones, each claimed with FOR UPDATE SKIP LOCKED so that replicas never send one twice, outside the
clinic's quiet hours (one due inside them falls due again at their end, and is dropped when they last
until the visit)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime

from notif_worker.domain import (
    DEFAULT_QUIET_HOURS,
    BookingNotice,
    ChannelFailed,
    QuietHours,
    ReminderChange,
    push_message,
    reminder_send_time,
)
from notif_worker.handlers.devices import DevicePushes, Retry
from notif_worker.handlers.sms import SmsHandlers, Text
from notif_worker.ports import Mailer, PushProvider, UnitOfWork

log = logging.getLogger("notif_worker")


def reminder_change(n: BookingNotice, default_offsets: tuple[int, ...]) -> ReminderChange:
    """Made at confirmation (the clinic's offsets, else ``default_offsets``), moved with a reschedule,
    dropped when the booking is cancelled, completed or missed."""
    if n.kind == "created":
        return "schedule", n.reminder_offsets or default_offsets
    if n.kind == "rescheduled":
        return "move", ()
    if n.kind in ("cancelled", "completed", "no_show"):
        return "drop", ()
    return None


class ReminderHandlers:
    def __init__(
        self,
        uow: UnitOfWork,
        mailer: Mailer,
        push: PushProvider,
        *,
        devices: DevicePushes | None = None,
        sms: SmsHandlers | None = None,
        retry: Retry | None = None,
        quiet_default: QuietHours = DEFAULT_QUIET_HOURS,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.uow = uow
        self.mailer = mailer
        self.push_provider = push
        self.devices = devices or DevicePushes(())
        self.sms = sms
        self.retry = retry or Retry()
        self.quiet_default = quiet_default
        self.clock = clock

    async def send_due_reminders(self, limit: int = 100) -> int:
        """Send due reminders, one transaction each: the row stays locked (SKIP LOCKED for the other
        replicas) while its push is stored and sent and its email sent, and is marked SENT in the same
        transaction — a worker killed before the commit leaves it PENDING for the next one.  A reminder
        due inside its clinic's quiet hours is deferred to their end (dropped when that is not before
        the visit); it is not counted."""
        sent = 0
        for _ in range(limit):
            async with self.uow() as repo:
                now = self.clock()
                r = await repo.claim_due_reminder(now)
                if r is None:
                    return sent
                n = r.notice
                quiet = await repo.quiet_hours(n.clinic_id) or self.quiet_default
                at = reminder_send_time(now, n.start, n.clinic_time_zone, quiet)
                if at is None:
                    log.info(
                        "reminder dropped: quiet hours last until the visit",
                        extra={"fields": {"booking_id": r.booking_id}},
                    )
                    await repo.drop_reminder(r.id)
                    continue
                if at > now:
                    await repo.defer_reminder(r.id, at)
                    continue
                text = await self.sms.claim(repo, n, str(r.offset_minutes)) if self.sms else None
                prefs = await repo.preferences(n.owner_user_id)
                if prefs.wants("reminders", "push"):
                    title, body, data = push_message(n)
                    await repo.add_inbox(self.push_provider.inbox_row(n, title, body, data))
                    for device in await repo.devices_of(n.owner_user_id):
                        if not self.devices.serves(device):
                            continue
                        try:
                            if await self.devices.send(device, title, body, data) == "gone":
                                await repo.remove_device(device.id)
                        except ChannelFailed as exc:  # the reminder still goes by email and in the inbox
                            log.warning(
                                "reminder push failed: %s",
                                exc,
                                extra={"fields": {"device_id": str(device.id)}},
                            )
                if prefs.wants("reminders", "email"):
                    await self.mailer.send(n)
                await repo.mark_reminder_sent(r.id, self.clock())
            # the text's claim committed with the reminder: sent now (its lease renewed as the send
            # starts), or by the stale-text sweep when this worker stops first (never twice)
            if text is not None:
                await self._text(text)
            sent += 1
        return sent

    async def _text(self, text: Text) -> None:
        """A reminder's claimed text (retried while the provider refuses it for now; a send whose
        outcome is unknown is not repeated): what is not settled is left to the stale-text sweep (the
        email and the push went)."""
        assert self.sms is not None
        try:
            await self.sms.send(text)
        except Exception as exc:  # the database: the text is the sweep's after its lease
            log.warning("reminder text left to the sweep: %s", exc)
