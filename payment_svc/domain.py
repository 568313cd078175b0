"""Payment domain: a payment per checkout session, its status rules, and the gateway port."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from petpro.errors import Conflict, FailedPrecondition, InvalidArgument, NotFound


class PaymentStatus(StrEnum):
    PENDING = "PENDING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    EXPIRED = "EXPIRED"
    REFUNDED = "REFUNDED"


# Allowed transitions.  EXPIRED → SUCCEEDED is a late payment (the session completed before we could
# expire it); it is recorded, and the booking side decides between confirming and refunding.
TRANSITIONS: dict[PaymentStatus, set[PaymentStatus]] = {
    PaymentStatus.PENDING: {PaymentStatus.SUCCEEDED, PaymentStatus.FAILED, PaymentStatus.EXPIRED},
    PaymentStatus.EXPIRED: {PaymentStatus.SUCCEEDED},
    PaymentStatus.FAILED: {PaymentStatus.SUCCEEDED},
    PaymentStatus.SUCCEEDED: {PaymentStatus.REFUNDED},
    PaymentStatus.REFUNDED: set(),
}


def sources(new: PaymentStatus) -> tuple[PaymentStatus, ...]:
    """The statuses a payment may move to ``new`` from (:data:`TRANSITIONS` read backwards)."""
    return tuple(old for old, allowed in TRANSITIONS.items() if new in allowed)


class PaymentNotFound(NotFound):
    reason = "PAYMENT_NOT_FOUND"


class InvalidSignature(InvalidArgument):
    reason = "INVALID_SIGNATURE"


class NotRefundable(FailedPrecondition):
    reason = "PAYMENT_NOT_REFUNDABLE"


class RequestIdReused(Conflict):
    reason = "IDEMPOTENCY_KEY_REUSED"


class AlreadyRefunded(NotRefundable):
    """Refunded in full already: nothing is left to refund (the money is back, or going back)."""

    reason = "PAYMENT_ALREADY_REFUNDED"


class NotPaid(FailedPrecondition):
    """The payment was never paid (pending, failed, expired): there is no order it fulfilled."""

    reason = "PAYMENT_NOT_SUCCEEDED"


class AlreadySettled(FailedPrecondition):
    reason = "PAYMENT_ALREADY_SETTLED"


class GatewayError(FailedPrecondition):
    reason = "PAYMENT_GATEWAY_ERROR"


@dataclass
class Payment:
    id: uuid.UUID
    order_ref: str
    request_id: str
    status: PaymentStatus
    amount_minor: int
    currency: str
    customer_email: str = ""
    session_id: str | None = None
    payment_url: str | None = None
    provider_payment_id: str | None = None
    refund_id: str | None = None
    expires_at: datetime | None = None
    created_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    updated_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    settled_at: datetime | None = None  # the order was fulfilled (SettlePayment)
    settled_order_id: str | None = None
    customer_user_id: uuid.UUID | None = None  # the payer's account, when the caller named it

    def can_become(self, new: PaymentStatus) -> bool:
        return new in TRANSITIONS[self.status]

    def refund_left(self, refunds: Iterable[Refund]) -> int:
        """What may still be refunded: the amount less the refunds the provider took and that have
        not failed.  Nothing once the payment is REFUNDED (also when refunded before refunds were
        recorded one by one)."""
        if self.status == PaymentStatus.REFUNDED:
            return 0
        return max(self.amount_minor - refunded_minor(refunds, REFUND_LIVE), 0)

    def refund_made(self, refund_id: str, refunds: Iterable[Refund]) -> None:
        """A refund of this payment was taken by the provider (``refunds``: all of them, it too).  The
        payment keeps its first refund's id and is REFUNDED once the live refunds cover its amount (a
        refund that fails later moves it back: :meth:`refund_failed`)."""
        if not self.refund_id:
            self.refund_id = refund_id
        if refunded_minor(refunds, REFUND_LIVE) >= self.amount_minor and self.can_become(
            PaymentStatus.REFUNDED
        ):
            self.status = PaymentStatus.REFUNDED

    def refund_failed(self, still_refunded_minor: int) -> None:
        """A refund of this payment failed after the provider accepted it (Stripe: ``refund.failed``;
        the money is back on the charge).  A payment marked REFUNDED is SUCCEEDED again unless the
        refunds that did succeed still cover its amount.  The one move backwards, and only on this
        fact: a stale or replayed event never moves a payment otherwise."""
        if self.status == PaymentStatus.REFUNDED and still_refunded_minor < self.amount_minor:
            self.status = PaymentStatus.SUCCEEDED

    def apply(self, event: GatewayEvent) -> None:
        """A verified provider event: learn the provider's ids, move the status if the transition is
        allowed (out-of-order or stale events never move a payment backwards)."""
        if event.provider_payment_id and not self.provider_payment_id:
            self.provider_payment_id = event.provider_payment_id
        if event.session_id and not self.session_id:
            self.session_id = event.session_id
        if event.status is not None and self.can_become(event.status):
            self.status = event.status


REFUND_OPEN = ("pending", "requires_action")  # Stripe refund statuses that will still change
REFUND_LIVE = (*REFUND_OPEN, "succeeded")  # the money is going back or went back (not failed/canceled)


@dataclass
class Refund:
    """One refund of (part of) a payment, keyed by the caller's request id; its status is Stripe's."""

    request_id: str
    payment_id: uuid.UUID
    provider_refund_id: str
    amount_minor: int
    currency: str
    status: str
    created_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    updated_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    @property
    def open(self) -> bool:
        return self.status in REFUND_OPEN


def refunded_minor(refunds: Iterable[Refund], statuses: Iterable[str]) -> int:
    """The amount of the refunds whose provider status is one of ``statuses``."""
    wanted = set(statuses)
    return sum(r.amount_minor for r in refunds if r.status in wanted)


@dataclass(frozen=True)
class RefundInfo:
    id: str
    status: str
    amount_minor: int


@dataclass(frozen=True)
class SessionState:
    """What the provider says about a checkout session (asked when a webhook may have been lost)."""

    status: str  # "open" | "complete" | "expired"
    paid: bool
    provider_payment_id: str | None


@dataclass(frozen=True)
class Session:
    id: str
    url: str


@dataclass(frozen=True)
class GatewayEvent:
    """A verified provider event, reduced to what we act on."""

    id: str
    type: str
    session_id: str | None
    provider_payment_id: str | None
    payment_id: str | None  # our id, from metadata
    status: PaymentStatus | None  # the status the event reports; None: nothing to change
    raw: dict[str, Any] = field(default_factory=dict)
    refund_id: str | None = None  # a refund object's event (refund.created / refund.updated / refund.failed)
    refund_status: str | None = None
