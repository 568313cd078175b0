"""Reminders of upcoming visits: what a booking event does to its booking's reminders (made at
confirmation, moved with a reschedule, dropped when the booking ends otherwise), and sending the due
ones, each claimed with FOR UPDATE SKIP LOCKED so that replicas never send one twice."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from notif_worker.domain import BookingNotice, ReminderChange, push_message
from notif_worker.ports import Mailer, PushProvider, UnitOfWork


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
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.uow = uow
        self.mailer = mailer
        self.push_provider = push
        self.clock = clock

    async def send_due_reminders(self, limit: int = 100) -> int:
        """Send due reminders, one transaction each: the row stays locked (SKIP LOCKED for the other
        replicas) while its push is stored and its email sent, and is marked SENT in the same
        transaction — a worker killed before the commit leaves it PENDING for the next one."""
        sent = 0
        for _ in range(limit):
            async with self.uow() as repo:
                r = await repo.claim_due_reminder(self.clock())
                if r is None:
                    return sent
                prefs = await repo.preferences(r.notice.owner_user_id)
                if prefs.wants("reminders", "push"):
                    await repo.add_inbox(self.push_provider.inbox_row(r.notice, *push_message(r.notice)))
                if prefs.wants("reminders", "email"):
                    await self.mailer.send(r.notice)
                await repo.mark_reminder_sent(r.id, self.clock())
            sent += 1
        return sent
