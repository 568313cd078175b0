"""Payment use cases: sessions, verified webhooks (deduplicated by event id), refunds, expiry."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from payment_svc.domain import (
    NotRefundable,
    Payment,
    PaymentNotFound,
    PaymentStatus,
    RequestIdReused,
)
from payment_svc.ports import PaymentGateway, UnitOfWork
from petpro.db import utcnow

log = logging.getLogger("payment_svc")


@dataclass(frozen=True)
class CreateSession:
    request_id: str
    order_ref: str
    amount_minor: int
    currency: str
    customer_email: str
    description: str
    success_url: str
    cancel_url: str
    expires_at: datetime | None


@dataclass(frozen=True)
class WebhookOutcome:
    event_id: str
    event_type: str
    duplicate: bool
    payment: Payment | None


class PaymentHandlers:
    def __init__(self, uow: UnitOfWork, gateway: PaymentGateway, *, public_base_url: str,
                 clock: Callable[[], datetime] = utcnow, read: UnitOfWork | None = None) -> None:
        self.uow = uow
        self.read = read or uow  # read-only: no transaction
        self.gateway = gateway
        self.public_base_url = public_base_url.rstrip("/")
        self.clock = clock

    async def create_session(self, cmd: CreateSession) -> Payment:
        now = self.clock()
        payment = Payment(id=uuid.uuid4(), order_ref=cmd.order_ref, request_id=cmd.request_id,
                          status=PaymentStatus.PENDING, amount_minor=cmd.amount_minor, currency=cmd.currency,
                          customer_email=cmd.customer_email, expires_at=cmd.expires_at, created_at=now,
                          updated_at=now)
        async with self.uow() as repo:
            if not await repo.add(payment):
                existing = await repo.by_request(cmd.request_id)
                assert existing is not None
                if (existing.order_ref, existing.amount_minor, existing.currency) != (
                        cmd.order_ref, cmd.amount_minor, cmd.currency):
                    raise RequestIdReused("request_id was used for a different payment")
                payment = existing
        if payment.session_id:
            return payment  # a retry after success: same answer
        # the provider call is idempotent on our payment id, so a retry after a crash here is safe
        session = await self.gateway.create_session(
            payment, cmd.description, cmd.success_url or f"{self.public_base_url}/payments/success",
            cmd.cancel_url or f"{self.public_base_url}/payments/cancel", idempotency_key=f"checkout-{payment.id}")
        async with self.uow() as repo:
            current = await repo.get(payment.id, for_update=True)
            assert current is not None
            if not current.session_id:
                current.session_id, current.payment_url = session.id, session.url
                await repo.save(current, self.clock())
            return current

    async def get(self, payment_id: uuid.UUID) -> Payment:
        async with self.read() as repo:
            p = await repo.get(payment_id)
        if p is None:
            raise PaymentNotFound("payment not found")
        return p

    async def for_order(self, order_ref: str) -> Payment:
        """The newest payment of an order: a read (its checkout page is stored with it)."""
        async with self.read() as repo:
            p = await repo.by_order_ref(order_ref)
        if p is None:
            raise PaymentNotFound("no payment for this order")
        return p

    async def handle_webhook(self, payload: bytes, signature: str) -> WebhookOutcome:
        event = self.gateway.verify_event(payload, signature)  # raises InvalidSignature
        now = self.clock()
        async with self.uow() as repo:
            payment = await repo.find_for_event(event.payment_id, event.session_id, event.provider_payment_id)
            first = await repo.record_event(event.id, event.type, payment.id if payment else None)
            if payment is None:
                log.info("webhook for an unknown payment", extra={"fields": {"event": event.id, "type": event.type}})
                return WebhookOutcome(event.id, event.type, not first, None)
            if first:
                payment.apply(event)
                await repo.save(payment, now)
            return WebhookOutcome(event.id, event.type, not first, payment)

    async def refund(self, payment_id: uuid.UUID, reason: str) -> Payment:
        async with self.uow() as repo:
            p = await repo.get(payment_id)
        if p is None:
            raise PaymentNotFound("payment not found")
        if p.status == PaymentStatus.REFUNDED:
            return p
        if p.status != PaymentStatus.SUCCEEDED or not p.provider_payment_id:
            raise NotRefundable(f"payment is {p.status.value.lower()}, nothing to refund")
        refund_id = await self.gateway.refund(p.provider_payment_id, p.amount_minor, reason,
                                              idempotency_key=f"refund-{p.id}")
        async with self.uow() as repo:
            current = await repo.get(payment_id, for_update=True)
            assert current is not None
            current.refund_id = refund_id
            if current.can_become(PaymentStatus.REFUNDED):
                current.status = PaymentStatus.REFUNDED
            await repo.save(current, self.clock())
            return current

    async def expire_session(self, session_id: str) -> Payment:
        async with self.uow() as repo:
            p = await repo.find_for_event(None, session_id, None)
        if p is None:
            raise PaymentNotFound("no payment for this session")
        return await self._expire(p)

    async def _expire(self, p: Payment) -> Payment:
        expired = await self.gateway.expire_session(p.session_id) if p.session_id else False
        async with self.uow() as repo:
            current = await repo.get(p.id, for_update=True)
            assert current is not None
            if expired and current.can_become(PaymentStatus.EXPIRED):
                current.status = PaymentStatus.EXPIRED
                await repo.save(current, self.clock())
            return current

    async def expire_due(self) -> int:
        """Expire checkout sessions whose slot hold has lapsed (Stripe's own minimum is 30 min)."""
        async with self.uow() as repo:
            due = await repo.pending_past(self.clock())
        for p in due:
            await self._expire(p)
        return len(due)
