"""The owner's notification preferences, per category (reminders, changes) and channel (email, push);
confirmations and cancellations are sent whatever they say."""

from __future__ import annotations

import uuid

from notif_worker.domain import Preferences
from notif_worker.ports import UnitOfWork


class PreferenceHandlers:
    def __init__(self, uow: UnitOfWork, read: UnitOfWork | None = None) -> None:
        self.uow = uow
        self.read = read or uow  # no transaction: reads

    async def preferences(self, user_id: uuid.UUID) -> Preferences:
        async with self.read() as repo:
            return await repo.preferences(user_id)

    async def update_preferences(self, user_id: uuid.UUID, changes: dict[str, bool]) -> Preferences:
        async with self.uow() as repo:
            return await repo.update_preferences(user_id, changes)
