"""The owner's side of push: their notification inbox (paged, newest first) and their devices."""

from __future__ import annotations

import uuid

from notif_worker.domain import DeviceRow, InboxRow
from notif_worker.ports import UnitOfWork
from petpro import paging


class InboxHandlers:
    def __init__(self, uow: UnitOfWork, read: UnitOfWork | None = None) -> None:
        self.uow = uow
        self.read = read or uow  # no transaction: reads

    async def inbox(self, user_id: uuid.UUID, size: int, token: str) -> tuple[list[InboxRow], str]:
        limit = paging.page_size(size)
        async with self.read() as repo:
            rows = await repo.list_inbox(user_id, paging.decode(token), limit)
        return rows, paging.next_token(rows, limit, lambda r: (r.created_at.isoformat(), str(r.id)))

    async def register_device(self, user_id: uuid.UUID, platform: str, token: str) -> DeviceRow:
        async with self.uow() as repo:
            return await repo.upsert_device(user_id, platform, token)
