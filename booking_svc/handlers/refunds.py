"""Refunds of cancelled bookings: sent to the payment service until the provider accepts them, re-checked
until it settles them, never lost (ListPendingRefunds shows the open ones)."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import datetime, timedelta

from booking_svc.domain import Actor, Booking, RefundState
from booking_svc.ports import RefundPort, UnitOfWork
from petpro import paging
from petpro.clock import utcnow


class RefundHandlers:
    def __init__(
        self,
        uow: UnitOfWork,
        read: UnitOfWork,
        refunds: RefundPort,
        *,
        clock: Callable[[], datetime] = utcnow,
        poll: timedelta = timedelta(seconds=2),
        retry_max: timedelta = timedelta(seconds=60),
    ) -> None:
        self.uow = uow
        self.read = read
        self.refunds = refunds
        self.clock = clock
        self.poll = poll  # how soon an accepted refund is checked again
        self.retry_max = retry_max  # the longest back-off of a failing one

    async def dispatch(self) -> int:
        """One pass: claim due open refunds (SKIP LOCKED, leased), send or re-check each at the payment
        service (idempotent on the booking's request id), record the outcome.  An error keeps the
        refund PENDING with a back-off; it is retried until it succeeds.  A refund the provider accepted
        and then failed (Stripe: ``pending`` → ``failed``, e.g. an expired card) shows FAILED and is made
        again as a new refund, under the request id of the booking's next round: only a failed refund
        is ever replaced, so at most one succeeds."""
        now = self.clock()
        async with self.uow() as repo:
            due = await repo.claim_due_refunds(now, now + self.retry_max)
        for b in due:
            if b.payment_id is None:  # paid at the clinic: never owes an online refund (refund NONE)
                continue
            # a FAILED refund is never asked again: the next round is a new refund under a new key
            rnd = b.refund_round + 1 if b.refund_state == RefundState.FAILED else b.refund_round
            try:
                r = await self.refunds.refund(
                    b.payment_id,
                    b.refund_minor,
                    b.currency,
                    refund_request_id(b.id, rnd),
                    f"booking {b.id} cancelled by {(b.cancelled_by or Actor.OWNER).lower()}",
                )
            except Exception as exc:  # provider or payment service failing: retry with back-off
                delay = min(timedelta(seconds=2 ** min(b.refund_attempts, 6)), self.retry_max)
                async with self.uow() as repo:
                    await repo.record_refund(
                        b.id,
                        b.refund_state,
                        b.provider_refund_id,
                        str(exc),
                        self.clock(),
                        self.clock() + delay,
                    )
                continue
            state = REFUND_STATES.get(r.status, RefundState.PROCESSING)
            error, next_at = "", None
            if state == RefundState.FAILED:  # accepted, then failed: shown as FAILED, a new refund follows
                error = f"refund {r.provider_refund_id} failed at the provider (round {rnd})"
                next_at = self.clock() + min(timedelta(seconds=2 ** min(rnd, 6)), self.retry_max)
            elif state == RefundState.PROCESSING:
                next_at = self.clock() + self.poll
            async with self.uow() as repo:
                await repo.record_refund(
                    b.id,
                    state,
                    r.provider_refund_id,
                    error,
                    self.clock(),
                    next_at,
                    refund_round=rnd,
                    was_round=b.refund_round,
                )
        return len(due)

    async def pending(self, size: int) -> list[Booking]:
        async with self.read() as repo:
            return await repo.open_refunds(paging.page_size(size))


REFUND_STATES = {
    "succeeded": RefundState.SUCCEEDED,
    "failed": RefundState.FAILED,
    "canceled": RefundState.FAILED,
}


def refund_request_id(booking_id: uuid.UUID, refund_round: int = 0) -> str:
    """A booking's refund in one round: its request id at the payment service (and Stripe's key from
    it).  Round 0 is the booking's refund; round n the n-th new one after the provider failed one."""
    return f"booking-{booking_id}" if refund_round == 0 else f"booking-{booking_id}-refund-{refund_round}"
