"""Checkout sessions: create one per payment (idempotent on the caller's request id), read payments,
expire the sessions whose hold lapsed, and apply what the provider reports about a session."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from payment_svc.domain import (
    GatewayError,
    Payment,
    PaymentNotFound,
    PaymentStatus,
    RequestIdReused,
    SessionState,
)
from payment_svc.ports import PaymentGateway, UnitOfWork
from petpro.clock import utcnow


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
    customer_user_id: uuid.UUID | None = None


class Sessions:
    def __init__(
        self,
        uow: UnitOfWork,
        gateway: PaymentGateway,
        *,
        public_base_url: str,
        clock: Callable[[], datetime] = utcnow,
        read: UnitOfWork | None = None,
    ) -> None:
        self.uow = uow
        self.read = read or uow  # read-only: no transaction
        self.gateway = gateway
        self.public_base_url = public_base_url.rstrip("/")
        self.clock = clock

    async def create(self, cmd: CreateSession) -> Payment:
        now = self.clock()
        payment = Payment(
            id=uuid.uuid4(),
            order_ref=cmd.order_ref,
            request_id=cmd.request_id,
            status=PaymentStatus.PENDING,
            amount_minor=cmd.amount_minor,
            currency=cmd.currency,
            customer_email=cmd.customer_email,
            customer_user_id=cmd.customer_user_id,
            expires_at=cmd.expires_at,
            created_at=now,
            updated_at=now,
        )
        # one INSERT … ON CONFLICT: its own transaction on the autocommit connection (no BEGIN/COMMIT
        # round trips); a retry's payment is read after it, committed
        async with self.read() as repo:
            if not await repo.add(payment):
                existing = await repo.by_request(cmd.request_id)
                assert existing is not None
                if (existing.order_ref, existing.amount_minor, existing.currency) != (
                    cmd.order_ref,
                    cmd.amount_minor,
                    cmd.currency,
                ):
                    raise RequestIdReused("request_id was used for a different payment")
                payment = existing
        if payment.session_id:
            return payment  # a retry after success: same answer
        # the provider call is idempotent on our payment id, so a retry after a crash here is safe
        session = await self.gateway.create_session(
            payment,
            cmd.description,
            cmd.success_url or f"{self.public_base_url}/payments/success",
            cmd.cancel_url or f"{self.public_base_url}/payments/cancel",
            idempotency_key=f"checkout-{payment.id}",
        )
        async with self.read() as repo:  # one statement: no transaction needed
            stored = await repo.set_session(payment.id, session.id, session.url, self.clock())
            if stored is None:  # a concurrent retry stored the session first: its answer
                stored = await repo.get(payment.id)
            assert stored is not None
            return stored

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

    async def expire(self, session_id: str) -> Payment:
        async with self.uow() as repo:
            p = await repo.find_for_event(None, session_id, None)
        if p is None:
            raise PaymentNotFound("no payment for this session")
        return await self._expire(p)

    async def _expire(self, p: Payment) -> Payment:
        expired = await self.gateway.expire_session(p.session_id) if p.session_id else False
        if not expired and p.session_id:
            # no longer open: paid (its webhook may never come) or expired by the provider
            with contextlib.suppress(GatewayError):
                await self.apply_state(p.id, await self.gateway.session_state(p.session_id))
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

    async def apply_state(self, payment_id: uuid.UUID, state: SessionState) -> bool:
        """Apply what the provider reports about a payment's session; True when that made the payment
        SUCCEEDED (its webhook may never come)."""
        if state.paid:
            new = PaymentStatus.SUCCEEDED
        elif state.status == "expired":
            new = PaymentStatus.EXPIRED
        else:
            return False
        async with self.uow() as repo:
            current = await repo.get(payment_id, for_update=True)
            if current is None or not current.can_become(new):
                return False
            if state.provider_payment_id and not current.provider_payment_id:
                current.provider_payment_id = state.provider_payment_id
            current.status = new
            await repo.save(current, self.clock())
            return new == PaymentStatus.SUCCEEDED
