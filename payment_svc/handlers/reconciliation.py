"""Reconciliation, never depending on the provider's webhook retries: open sessions with no news are
asked about at the provider, succeeded payments nobody settled are listed, and settling records the
order a payment fulfilled."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta

from payment_svc.domain import (
    AlreadySettled,
    GatewayError,
    NotPaid,
    Payment,
    PaymentNotFound,
    PaymentStatus,
)
from payment_svc.handlers.sessions import Sessions
from payment_svc.ports import PaymentGateway, UnitOfWork
from petpro.clock import utcnow

log = logging.getLogger("payment_svc")


class Reconciliation:
    def __init__(
        self,
        uow: UnitOfWork,
        gateway: PaymentGateway,
        sessions: Sessions,
        *,
        clock: Callable[[], datetime] = utcnow,
        read: UnitOfWork | None = None,
        statements: UnitOfWork | None = None,
    ) -> None:
        self.uow = uow
        self.read = read or uow  # read-only: no transaction
        self.statements = statements or self.read  # plain-SQL statements (settling)
        self.gateway = gateway
        self.sessions = sessions
        self.clock = clock

    async def reconcile_pending(self, older_than: timedelta) -> int:
        """Ask the provider about open sessions with no news for ``older_than``: one paid whose webhook
        never came becomes SUCCEEDED here (and then shows in :meth:`unsettled`).  Returns how many."""
        async with self.uow() as repo:
            due = await repo.pending_to_check(self.clock() - older_than)
        found = 0
        for p in due:
            assert p.session_id
            try:
                state = await self.gateway.session_state(p.session_id)
            except GatewayError:
                log.warning(
                    "provider not reachable for reconciliation", extra={"fields": {"payment": str(p.id)}}
                )
                continue
            if await self.sessions.apply_state(p.id, state):
                log.warning(
                    "paid session found without its webhook",
                    extra={"fields": {"payment": str(p.id), "session": p.session_id}},
                )
                found += 1
        return found

    async def unsettled(self, older_than: timedelta, limit: int = 100) -> list[Payment]:
        async with self.read() as repo:
            return await repo.unsettled(self.clock() - older_than, limit)

    async def settle_many(self, settlements: list[tuple[uuid.UUID, str]]) -> list[uuid.UUID]:
        """:meth:`settle` for many (payment id, order id) pairs in one statement: the edge's fulfilment
        settles the bookings its webhooks confirmed in batches, a fraction of a second after each
        confirmation (``edge.fulfilment.Settlements``).  Returns the payments not settled with the
        order id given (unknown, never paid, settled for another order); a paid one left unsettled is
        the sweep's for lost webhooks, after its grace."""
        async with self.statements() as repo:  # one UPDATE, its own transaction
            done = await repo.settle_many(settlements, self.clock())
        return [pid for pid, order in dict.fromkeys(settlements) if (pid, order) not in done]

    async def settle(self, payment_id: uuid.UUID, order_id: str) -> Payment:
        """Record that the order of a paid payment is fulfilled (its booking exists).  Idempotent per
        order id.  A payment refunded since (the booking cancelled before a late settle) is settled
        too: the order it paid for is still a fact."""
        async with self.statements() as repo:  # the settling UPDATE is its own transaction
            while True:
                settled = await repo.settle(payment_id, order_id, self.clock())
                if settled is not None:
                    return settled
                # why not: unknown, settled already (for which order), not paid; or it became paid
                # between the two statements (its webhook just applied): then settle it now
                p = await repo.get(payment_id)
                if p is None:
                    raise PaymentNotFound("payment not found")
                if p.settled_at is not None:
                    if p.settled_order_id != order_id:
                        raise AlreadySettled("payment already settled for another order")
                    return p
                if p.status not in (PaymentStatus.SUCCEEDED, PaymentStatus.REFUNDED):
                    raise NotPaid(f"payment is {p.status.value.lower()}, nothing to settle")
