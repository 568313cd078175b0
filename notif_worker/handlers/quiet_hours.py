"""A clinic's quiet hours (no reminders in them): the platform default until the clinic sets its own."""

from __future__ import annotations

import uuid

from notif_worker.domain import DEFAULT_QUIET_HOURS, QuietHours
from notif_worker.ports import UnitOfWork


class QuietHoursHandlers:
    def __init__(self, uow: UnitOfWork, read: UnitOfWork, default: QuietHours = DEFAULT_QUIET_HOURS) -> None:
        self.uow = uow
        self.read = read
        self.default = default

    async def quiet_hours(self, clinic_id: uuid.UUID) -> tuple[QuietHours, bool]:
        """The clinic's quiet hours, and whether they are the platform default."""
        async with self.read() as repo:
            own = await repo.quiet_hours(clinic_id)
        return (own, False) if own is not None else (self.default, True)

    async def set_quiet_hours(self, clinic_id: uuid.UUID, quiet: QuietHours) -> QuietHours:
        async with self.uow() as repo:
            await repo.set_quiet_hours(clinic_id, quiet)
        return quiet
