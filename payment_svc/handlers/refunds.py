"""Refunds of succeeded payments through the provider."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import datetime

from payment_svc.domain import NotRefundable, Payment, PaymentNotFound, PaymentStatus, Refund
from payment_svc.ports import PaymentGateway, UnitOfWork
from petpro.clock import utcnow
from petpro.errors import InvalidArgument


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

    async def refund(self, payment_id: uuid.UUID, reason: str) -> Payment:
        async with self.uow() as repo:
            p = await repo.get(payment_id)
        if p is None:
            raise PaymentNotFound("payment not found")
        if p.status == PaymentStatus.REFUNDED:
            return p
        if p.status != PaymentStatus.SUCCEEDED or not p.provider_payment_id:
            raise NotRefundable(f"payment is {p.status.value.lower()}, nothing to refund")
        info = await self.gateway.refund(
            p.provider_payment_id, p.amount_minor, reason, idempotency_key=f"refund-{p.id}"
        )
        async with self.uow() as repo:
            current = await repo.get(payment_id, for_update=True)
            assert current is not None
            current.refund_id = info.id
            if current.can_become(PaymentStatus.REFUNDED):
                current.status = PaymentStatus.REFUNDED
            await repo.save(current, self.clock())
            return current

    async def refund_part(
        self,
        payment_id: uuid.UUID,
        request_id: str,
        amount_minor: int | None,
        reason: str,
        currency: str = "",
    ) -> tuple[Payment, Refund]:
        """A refund of (part of) a payment, idempotent on ``request_id`` (the provider's key derives from
        it): a retry returns the stored refund, whose status follows the provider's refund webhooks (and
        is looked up at the provider while it is still open)."""
        async with self.read() as repo:
            p = await repo.get(payment_id)
            existing = await repo.refund(request_id)
        if p is None:
            raise PaymentNotFound("payment not found")
        if existing is not None:
            if existing.open:  # a webhook may have raced our insert: ask the provider (a read)
                info = await self.gateway.retrieve_refund(existing.provider_refund_id)
                if info.status != existing.status:
                    async with self.uow() as repo:
                        await repo.set_refund_status(existing.provider_refund_id, info.status, self.clock())
                    existing.status = info.status
            return p, existing
        if p.status not in (PaymentStatus.SUCCEEDED, PaymentStatus.REFUNDED) or not p.provider_payment_id:
            raise NotRefundable(f"payment is {p.status.value.lower()}, nothing to refund")
        if currency and currency != p.currency:
            raise InvalidArgument.field(
                "amount.currency", f"must be the payment's currency {p.currency}", "CURRENCY_MISMATCH"
            )
        amount = amount_minor or p.amount_minor
        if not 0 < amount <= p.amount_minor:
            raise InvalidArgument.field(
                "amount", f"must be within 1..{p.amount_minor}", "AMOUNT_OUT_OF_RANGE"
            )
        info = await self.gateway.refund(
            p.provider_payment_id, amount, reason, idempotency_key=f"refund-{request_id}"
        )
        now = self.clock()
        async with self.uow() as repo:
            stored = await repo.add_refund(
                Refund(
                    request_id, p.id, info.id, info.amount_minor or amount, p.currency, info.status, now, now
                )
            )
            current = await repo.get(payment_id, for_update=True)
            assert current is not None
            if not current.refund_id:
                current.refund_id = info.id
                await repo.save(current, now)
            return current, stored
