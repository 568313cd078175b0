"""Refunds of paid payments through the provider: one API, idempotent on the caller's request id.

Every refund carries a request id (booking's cancellation refunds ``booking-<id>-refund-<round>``, the
edge's payment fulfilment ``fulfilment-<payment id>`` for a slot that was lost); the provider's
idempotency key is ``refund-<request id>``, so a retry, even after a crash between the provider's
answer and our commit, returns the one refund the provider made.  A retry returns the refund as stored
(its status follows the provider's refund webhooks, and is looked up at the provider while it is still
open).  The payment is REFUNDED once its live refunds cover its amount."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from payment_svc.domain import (
    AlreadyRefunded,
    NotRefundable,
    Payment,
    PaymentNotFound,
    PaymentStatus,
    Refund,
    RequestIdReused,
)
from payment_svc.ports import PaymentGateway, UnitOfWork
from petpro.clock import utcnow
from petpro.errors import InvalidArgument


@dataclass(frozen=True)
class RefundCommand:
    payment_id: uuid.UUID
    request_id: str  # idempotency key of this refund (AIP-155)
    reason: str
    amount_minor: int | None = None  # None: everything that is left
    currency: str = ""  # "" or the payment's


class Refunds:
    def __init__(
        self,
        uow: UnitOfWork,
        gateway: PaymentGateway,
        *,
        clock: Callable[[], datetime] = utcnow,
        read: UnitOfWork | None = None,
    ) -> None:
        self.uow = uow
        self.read = read or uow  # read-only: no transaction
        self.gateway = gateway
        self.clock = clock

    async def refund(self, cmd: RefundCommand) -> tuple[Payment, Refund]:
        """Refund (part of) a payment; the payment as it is after it, and the refund of this request."""
        if not cmd.request_id:
            raise InvalidArgument.field("request_id", "is required", "REQUIRED")
        async with self.read() as repo:
            p = await repo.get(cmd.payment_id)
            existing = await repo.refund(cmd.request_id)
            made = await repo.refunds_of(cmd.payment_id) if p is not None and existing is None else []
        if p is None:
            raise PaymentNotFound("payment not found")
        if existing is not None:
            return p, await self._replay(p, existing)
        if p.status not in (PaymentStatus.SUCCEEDED, PaymentStatus.REFUNDED) or not p.provider_payment_id:
            raise NotRefundable(f"payment is {p.status.value.lower()}, nothing to refund")
        if cmd.currency and cmd.currency != p.currency:
            raise InvalidArgument.field(
                "amount.currency", f"must be the payment's currency {p.currency}", "CURRENCY_MISMATCH"
            )
        left = p.refund_left(made)
        if left == 0:
            raise AlreadyRefunded("the payment is refunded in full already")
        amount = cmd.amount_minor or left
        if not 0 < amount <= left:
            raise InvalidArgument.field("amount", f"must be within 1..{left}", "AMOUNT_OUT_OF_RANGE")
        info = await self.gateway.refund(
            p.provider_payment_id, amount, cmd.reason, idempotency_key=f"refund-{cmd.request_id}"
        )
        now = self.clock()
        async with self.uow() as repo:
            stored = await repo.add_refund(
                Refund(
                    cmd.request_id,
                    p.id,
                    info.id,
                    info.amount_minor or amount,
                    p.currency,
                    info.status,
                    now,
                    now,
                )
            )
            current = await repo.get(p.id, for_update=True)
            assert current is not None
            current.refund_made(info.id, await repo.refunds_of(p.id))
            await repo.save(current, now)
            return current, stored

    async def _replay(self, p: Payment, existing: Refund) -> Refund:
        """A retried request: the refund it made (a request id names one refund of one payment)."""
        if existing.payment_id != p.id:
            raise RequestIdReused("request_id was used for a refund of another payment")
        if existing.open:  # a webhook may have raced our insert: ask the provider (a read)
            info = await self.gateway.retrieve_refund(existing.provider_refund_id)
            if info.status != existing.status:
                async with self.uow() as repo:
                    await repo.set_refund_status(existing.provider_refund_id, info.status, self.clock())
                existing.status = info.status
        return existing
