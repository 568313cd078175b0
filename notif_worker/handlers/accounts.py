"""A deleted account in notif (account.deleted) and the owner's data export.

The erasure is recorded with its effect in one transaction (``erased_accounts``, keyed by the user):
exactly once in effect however often the event comes.  Booking's cancellations of the account's
bookings travel on other topics and may be applied after it: NotifyHandlers asks whether the owner
was erased before an event, on the connection that records it (an erased owner gets no email nor
push, the clinic's feed row carries no name), and :meth:`erased` after it, erasing again (a row
written while the erasure ran)."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from notif_worker.ports import UnitOfWork
from petpro.erasure import AccountDeleted

log = logging.getLogger("notif_worker")


class AccountErasure:
    def __init__(
        self,
        uow: UnitOfWork,
        read: UnitOfWork,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        check: UnitOfWork | None = None,
    ) -> None:
        """``check``: where :meth:`erased` asks, after each booking event (default ``read``): the
        worker's plain-SQL autocommit connections."""
        self.uow = uow
        self.read = read
        self.clock = clock
        self.check = check or read

    async def erase(self, event: AccountDeleted) -> None:
        digests = list(event.email_sha256)
        # first the mark, committed on its own: from then on every booking event about the account
        # sees it (NotifyHandlers), so a row such an event writes while the erasure runs is erased
        # again after it; then the erasure, recorded done in its own transaction (exactly once)
        async with self.uow() as repo:
            await repo.mark_erasing(event.user_id, event.event_id, digests)
        async with self.uow() as repo:
            if not await repo.record_erased(event.user_id, self.clock()):
                return  # done before
            await repo.erase_user(event.user_id, digests)
        log.info(
            "erased a deleted account's notifications", extra={"fields": {"event_id": str(event.event_id)}}
        )

    async def erased(self, user_id: uuid.UUID) -> list[str] | None:
        async with self.check() as repo:
            return await repo.erased_digests(user_id)

    async def erase_again(self, user_id: uuid.UUID, digests: list[str]) -> None:
        async with self.uow() as repo:
            await repo.erase_user(user_id, digests)

    async def export(self, user_id: uuid.UUID, email: str) -> dict[str, Any]:
        async with self.read() as repo:
            return await repo.user_export(user_id, email)
