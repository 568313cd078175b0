"""Payment use cases: sessions, verified webhooks (deduplicated by event id), refunds, expiry."""

from __future__ import annotations

import contextlib
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from payment_svc.domain import (
    AlreadySettled,
    GatewayError,
    NotRefundable,
    Payment,
    PaymentNotFound,
    PaymentStatus,
    Refund,
    RequestIdReused,
    SessionState,
)
from payment_svc.ports import PaymentGateway, UnitOfWork
from petpro.clock import utcnow
from petpro.errors import InvalidArgument

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

    async def create_session(self, cmd: CreateSession) -> Payment:
        now = self.clock()
        payment = Payment(
            id=uuid.uuid4(),
            order_ref=cmd.order_ref,
            request_id=cmd.request_id,
            status=PaymentStatus.PENDING,
            amount_minor=cmd.amount_minor,
            currency=cmd.currency,
            customer_email=cmd.customer_email,
            expires_at=cmd.expires_at,
            created_at=now,
            updated_at=now,
        )
        async with self.uow() as repo:
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

    async def handle_webhook(self, payload: bytes, signature: str) -> WebhookOutcome:
        event = self.gateway.verify_event(payload, signature)  # raises InvalidSignature
        now = self.clock()
        async with self.uow() as repo:
            payment = await repo.find_for_event(event.payment_id, event.session_id, event.provider_payment_id)
            first = await repo.record_event(event.id, event.type, payment.id if payment else None)
            if payment is None:
                log.info(
                    "webhook for an unknown payment",
                    extra={"fields": {"event": event.id, "type": event.type}},
                )
                return WebhookOutcome(event.id, event.type, not first, None)
            if first:
                payment.apply(event)
                if event.refund_id and event.refund_status:  # refund.created / refund.updated / refund.failed
                    await repo.set_refund_status(event.refund_id, event.refund_status, now)
                    if event.refund_status == "failed":  # accepted, then failed: the money is back
                        payment.refund_failed(await repo.succeeded_refunds_minor(payment.id))
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

    async def expire_session(self, session_id: str) -> Payment:
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
                await self._apply_state(p.id, await self.gateway.session_state(p.session_id))
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

    # -- reconciliation (never depends on the provider's webhook retries) ------------------------------

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
            if await self._apply_state(p.id, state):
                log.warning(
                    "paid session found without its webhook",
                    extra={"fields": {"payment": str(p.id), "session": p.session_id}},
                )
                found += 1
        return found

    async def _apply_state(self, payment_id: uuid.UUID, state: SessionState) -> bool:
        """Apply what the provider reports; True when that made the payment SUCCEEDED."""
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

    async def unsettled(self, older_than: timedelta, limit: int = 100) -> list[Payment]:
        async with self.read() as repo:
            return await repo.unsettled(self.clock() - older_than, limit)

    async def settle(self, payment_id: uuid.UUID, order_id: str) -> Payment:
        """Record that the order of a succeeded payment is fulfilled.  Idempotent per order id."""
        async with self.uow() as repo:
            p = await repo.get(payment_id, for_update=True)
            if p is None:
                raise PaymentNotFound("payment not found")
            if p.settled_at is not None:
                if p.settled_order_id != order_id:
                    raise AlreadySettled("payment already settled for another order")
                return p
            if p.status != PaymentStatus.SUCCEEDED:
                raise NotRefundable(
                    f"payment is {p.status.value.lower()}, nothing to settle", reason="PAYMENT_NOT_SUCCEEDED"
                )
            now = self.clock()
            p.settled_at, p.settled_order_id = now, order_id
            await repo.save(p, now)
            return p
