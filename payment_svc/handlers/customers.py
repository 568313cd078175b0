"""A customer across payment: the payments (and refunds) of an owner's data export, and anonymising
the payments of a deleted account (account.deleted: the customer email goes, amounts, statuses and
refunds stay for the accounting), exactly once per event (recorded in the same transaction)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

from payment_svc.ports import UnitOfWork
from petpro.clock import utcnow
from petpro.erasure import AccountDeleted
from petpro.mesh import ACCOUNT_DELETED

log = logging.getLogger("payment_svc")


class Customers:
    def __init__(self, uow: UnitOfWork, read: UnitOfWork, *, clock: Callable[[], datetime] = utcnow) -> None:
        self.uow = uow
        self.read = read
        self.clock = clock

    async def erase(self, event: AccountDeleted) -> None:
        async with self.uow() as repo:
            if not await repo.record_processed(event.event_id, ACCOUNT_DELETED.name, self.clock()):
                return  # done before: a redelivery
            n = await repo.anonymise_customer(event.user_id, list(event.email_sha256), self.clock())
        log.info("anonymised a deleted account's payments", extra={"fields": {"payments": n}})

    async def export(self, order_refs: list[str], email: str) -> dict[str, Any]:
        async with self.read() as repo:
            found = await repo.customer_payments(order_refs, email)
            out = []
            for p in found:
                refunds = await repo.refunds_of(p.id)
                out.append(
                    {
                        "payment_id": str(p.id),
                        "order_ref": p.order_ref,
                        "status": p.status.value,
                        "amount_minor": p.amount_minor,
                        "currency": p.currency,
                        "customer_email": p.customer_email,
                        "created_at": p.created_at.isoformat(),
                        "settled_at": p.settled_at.isoformat() if p.settled_at else None,
                        "refunds": [
                            {
                                "amount_minor": r.amount_minor,
                                "currency": r.currency,
                                "status": r.status,
                                "created_at": r.created_at.isoformat(),
                            }
                            for r in refunds
                        ],
                    }
                )
        return {"payments": out}
