"""Provider webhooks: verify the signature, record the event once (deduplicated by event id) and apply
it to its payment (status, provider ids, the status of a refund)."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from payment_svc.domain import Payment, refunded_minor
from payment_svc.ports import PaymentGateway, UnitOfWork
from petpro.clock import utcnow

log = logging.getLogger("payment_svc")


@dataclass(frozen=True)
class WebhookOutcome:
    event_id: str
    event_type: str
    duplicate: bool
    payment: Payment | None


class Webhooks:
    def __init__(
        self,
        uow: UnitOfWork,
        gateway: PaymentGateway,
        *,
        clock: Callable[[], datetime] = utcnow,
        read: UnitOfWork | None = None,
    ) -> None:
        self.uow = uow
        self.read = read or uow  # no transaction: one statement
        self.gateway = gateway
        self.clock = clock

    async def handle(self, payload: bytes, signature: str) -> WebhookOutcome:
        event = self.gateway.verify_event(payload, signature)  # raises InvalidSignature
        now = self.clock()
        ours = _our_id(event.payment_id)
        if ours is not None and not event.refund_id:
            # a payment's event naming it by our id (every paid Checkout's): recorded and applied in one
            # statement (PaymentRepository.apply_event); a refund's event also updates its refund row
            async with self.read() as repo:
                found = await repo.apply_event(ours, event, now)
            if found is not None:
                return WebhookOutcome(event.id, event.type, not found[1], found[0])
        # the general case: found by our id, the session or the provider's id, or about no payment
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
                        payment.refund_failed(
                            refunded_minor(await repo.refunds_of(payment.id), ("succeeded",))
                        )
                await repo.save(payment, now)
            return WebhookOutcome(event.id, event.type, not first, payment)


def _our_id(value: str | None) -> uuid.UUID | None:
    """Our payment id from an event's metadata (None: absent or not an id of ours)."""
    if not value:
        return None
    try:
        return uuid.UUID(value)
    except ValueError:
        return None
