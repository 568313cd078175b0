"""PaymentFulfilment: a paid payment ends in one booking or one refund, whichever entry point finishes
it: :meth:`PaymentFulfilment.webhook` (the provider's signed event, through edge/web's
``/webhooks/stripe``) or :meth:`PaymentFulfilment.sweep` (the edge's background task for payments
whose webhook never came).  Both call :meth:`PaymentFulfilment.fulfil`: ConfirmBooking, then what
:func:`edge.fulfilment.decisions.after_confirm` decides: SettlePayment with the booking, RefundPayment,
or nothing yet (retry).  Every step is idempotent, so replays, the two entry points and replicas may
meet on one payment: it still ends in one booking (settled) or one refund.

Settling in batches (``settle_every`` > 0, the edge's ``EDGE_SETTLE_BATCH_SECONDS``): the webhook
path queues the payment and its booking in :class:`Settlements` instead of calling SettlePayment
itself, and a background task of the edge settles what is queued with one SettlePayments call (one
statement in payment_svc) every ``settle_every`` seconds, and when the edge stops.  What that changes:
a confirmed payment stays unsettled (``settled_at`` empty, e.g. in the owner's data export) for up to
``settle_every`` plus one call after its webhook's answer, instead of being settled before it; in
exchange a booking costs one RPC fewer (SettlePayment's client and server work, a fraction of one call
per batch instead).  What it keeps: the booking is committed before the webhook answers 2xx, a refund
is still made within the webhook's call, and a settlement lost in between (the edge killed, payment
unreachable for the batch's call, an answer nobody decided for) leaves a SUCCEEDED payment unsettled,
which is exactly what the sweep for lost webhooks finds after its grace: ConfirmBooking answers the
same booking again (idempotent per lock and payment) and the sweep settles it.  Settling is
bookkeeping: the booking or the refund is decided by ConfirmBooking either way."""

from __future__ import annotations

import logging
from collections import Counter as Tally
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from prometheus_client import Counter

from edge.fulfilment.decisions import Action, after_confirm, after_verify, refund_done, refund_request_id
from edge.fulfilment.ports import Bookings, PaidPayment, Payments, VerifiedEvent
from petpro.upstream import UpstreamError

log = logging.getLogger("edge.fulfilment")

RECONCILED = Counter(
    "petpro_edge_reconciled_payments_total",
    "Succeeded payments the sweep found unsettled (their webhook lost) and finished, by outcome",
    ["outcome"],
)
SWEEPS = Counter("petpro_edge_fulfilment_sweeps_total", "Completed passes of the sweep for lost webhooks")

# Stripe sends a paid Checkout as both payment_intent.succeeded and checkout.session.completed; its
# advice for Checkout is to fulfil on checkout.session.completed (async_payment_succeeded for delayed
# methods).  The other events are verified and recorded by PaymentService, then acknowledged: one
# ConfirmBooking per payment instead of two.
FULFILMENT_EVENTS = frozenset({"checkout.session.completed", "checkout.session.async_payment_succeeded"})
REFUND_REASON_TEXT = "slot_unavailable"  # kept in the refund's metadata at the provider


class Outcome(StrEnum):
    CONFIRMED = "confirmed"  # the booking is committed, the payment settled (or queued: Settlements)
    REFUNDED = "refunded"  # the booking can never be: the payment is refunded
    IGNORED = "ignored"  # a verified event with nothing to do (not a succeeded payment)
    RECORDED = "recorded"  # a succeeded payment's other event: recorded, its fulfilment event confirms
    REJECTED = "rejected"  # not a genuine event: 400, the sender should not retry
    RETRY = "retry"  # could not be finished now: 503 (the sender retries) / the next sweep


@dataclass(frozen=True)
class Fulfilled:
    """How one payment's fulfilment ended: CONFIRMED, REFUNDED or RETRY (``step`` and ``error`` say
    where and why; ``cause`` is the ConfirmBooking reason that made it a refund)."""

    outcome: Outcome
    booking_id: str = ""
    error: UpstreamError | None = None
    step: str = ""  # "confirm" | "settle" | "refund"
    cause: str = ""


@dataclass(frozen=True)
class WebhookResult:
    outcome: Outcome
    event: VerifiedEvent | None = None
    booking_id: str = ""
    error: UpstreamError | None = None  # why it was REJECTED / must be retried
    step: str = ""  # "verify" | "confirm" | "settle" | "refund": where it stopped

    @property
    def payment_id(self) -> str:
        return self.event.payment_id if self.event else ""


def _error_fields(err: UpstreamError) -> dict[str, Any]:
    return {"code": err.kind.name, "reason": err.reason, "domain": err.domain}


class Settlements:
    """The payments the webhook path confirmed, waiting to be settled with one SettlePayments call
    (module docstring: what batching changes, and why a lost settlement is the sweep's).  ``flush``
    runs every ``settle_every`` seconds as a background task of the edge, and when it stops."""

    MAX_BATCH = 500  # SettlePaymentsRequest.settlements' limit

    def __init__(self, payments: Payments, every: float) -> None:
        self.payments = payments
        self.every = every  # seconds between flushes (the edge's background task)
        self.pending: dict[str, str] = {}  # payment id → booking id (a replay queues it once)

    def add(self, payment_id: str, booking_id: str) -> None:
        self.pending.setdefault(payment_id, booking_id)

    async def flush(self) -> int:
        """Settle what is queued, up to :attr:`MAX_BATCH` a call; how many were settled.  A call that
        fails leaves its payments unsettled for the sweep (never queued again: the sweep decides)."""
        settled = 0
        while self.pending:
            batch = list(self.pending.items())[: self.MAX_BATCH]
            for payment_id, _ in batch:
                del self.pending[payment_id]
            try:
                left = await self.payments.settle_many(batch)
            except UpstreamError as err:
                log.warning(
                    "payments not settled; the sweep settles them after its grace",
                    extra={"fields": {"payments": len(batch), **_error_fields(err)}},
                )
                continue
            bookings = dict(batch)
            for payment_id in left:
                log.warning(
                    "payment not settled",
                    extra={"fields": {"payment_id": payment_id, "booking_id": bookings[payment_id]}},
                )
            settled += len(batch) - len(left)
        return settled

    async def close(self) -> None:
        """On stop: settle what the webhooks confirmed since the last flush."""
        await self.flush()


class PaymentFulfilment:
    """The use case.  ``grace_seconds``: how long a succeeded payment stays unsettled before the sweep
    takes it as a lost webhook; ``batch``: payments per sweep pass; ``settle_every``: 0 settles each
    payment within its webhook's call, more queues the webhook path's settlements in
    :attr:`settlements` for a flush every that many seconds (module docstring)."""

    def __init__(
        self,
        payments: Payments,
        bookings: Bookings,
        *,
        grace_seconds: int = 120,
        batch: int = 100,
        settle_every: float = 0.0,
    ) -> None:
        self.payments = payments
        self.bookings = bookings
        self.grace_seconds = grace_seconds
        self.batch = batch
        self.settlements = Settlements(payments, settle_every) if settle_every > 0 else None

    # -- the one decision ------------------------------------------------------------------------------

    async def fulfil(self, payment: PaidPayment, entry: str) -> Fulfilled:
        """Confirm the payment's booking, then settle the payment, or refund it, or leave it for a retry
        (``entry``: "webhook" | "sweep", for the logs)."""
        fields = {"payment_id": payment.payment_id, "lock_id": payment.order_ref, "entry": entry}
        booking_id, error = "", None
        try:
            booking_id = await self.bookings.confirm(payment.order_ref, payment.payment_id)
        except UpstreamError as err:
            error = err
        action = after_confirm(error)
        if action is Action.SETTLE:
            if self.settlements is not None and entry == "webhook":
                self.settlements.add(payment.payment_id, booking_id)  # settled by the next flush
                return Fulfilled(Outcome.CONFIRMED, booking_id)
            return await self._settle(payment, booking_id, fields)
        assert error is not None
        if action is Action.REFUND:
            return await self._refund(payment, error, fields)
        log.warning("booking not confirmed", extra={"fields": {**fields, **_error_fields(error)}})
        return Fulfilled(Outcome.RETRY, error=error, step="confirm")

    async def _settle(self, payment: PaidPayment, booking_id: str, fields: dict[str, Any]) -> Fulfilled:
        try:
            await self.payments.settle(payment.payment_id, booking_id)
        except UpstreamError as err:  # the booking exists; the settle is retried (idempotent)
            log.warning(
                "payment not settled",
                extra={"fields": {**fields, "booking_id": booking_id, **_error_fields(err)}},
            )
            return Fulfilled(Outcome.RETRY, booking_id, error=err, step="settle")
        return Fulfilled(Outcome.CONFIRMED, booking_id)

    async def _refund(self, payment: PaidPayment, cause: UpstreamError, fields: dict[str, Any]) -> Fulfilled:
        try:
            await self.payments.refund(
                payment.payment_id, refund_request_id(payment.payment_id), REFUND_REASON_TEXT
            )
        except UpstreamError as err:
            if not refund_done(err):
                log.error(
                    "refund failed",
                    extra={"fields": {**fields, "cause": cause.reason, **_error_fields(err)}},
                )
                return Fulfilled(Outcome.RETRY, error=err, step="refund", cause=cause.reason)
        return Fulfilled(Outcome.REFUNDED, cause=cause.reason)

    # -- entry point 1: the provider's webhook --------------------------------------------------------

    async def webhook(self, payload: bytes, signature: str) -> WebhookResult:
        """Verify and record the event (PaymentService); fulfil a succeeded payment on its Checkout
        fulfilment event.  A replay (``duplicate``) is fulfilled again on purpose: every step is
        idempotent, and a first delivery that failed half-way must still end in a booking."""
        try:
            event = await self.payments.verify(payload, signature)
        except UpstreamError as err:
            if after_verify(err) is Action.REJECT:
                log.info("webhook rejected", extra={"fields": {"reason": err.reason}})
                return WebhookResult(Outcome.REJECTED, error=err, step="verify")
            log.warning("webhook not handled", extra={"fields": _error_fields(err)})
            return WebhookResult(Outcome.RETRY, error=err, step="verify")

        paid = event.paid
        if paid is None:
            return WebhookResult(Outcome.IGNORED, event)
        if event.event_type not in FULFILMENT_EVENTS:
            return WebhookResult(Outcome.RECORDED, event)
        done = await self.fulfil(paid, "webhook")
        fields = {"payment_id": paid.payment_id, "lock_id": paid.order_ref, "event_id": event.event_id}
        if done.outcome is Outcome.CONFIRMED:
            log.info("booking confirmed", extra={"fields": {**fields, "booking_id": done.booking_id}})
        elif done.outcome is Outcome.REFUNDED:
            log.info("payment refunded", extra={"fields": {**fields, "cause": done.cause}})
        return WebhookResult(done.outcome, event, done.booking_id, done.error, done.step)

    # -- entry point 2: the sweep for lost webhooks ---------------------------------------------------

    async def sweep(self) -> Tally[str]:
        """One pass over the succeeded payments nobody settled for ``grace_seconds``: the webhook path
        settles each payment it fulfils, so what is left here lost its webhook (or every delivery of it
        failed).  Each is fulfilled as the webhook would have; outcomes counted by name."""
        found = await self.payments.unsettled(self.grace_seconds, self.batch)
        outcomes: Tally[str] = Tally()
        for payment in found:
            done = await self.fulfil(payment, "sweep")
            fields = {"payment_id": payment.payment_id, "lock_id": payment.order_ref}
            if done.outcome is Outcome.CONFIRMED:
                log.warning(
                    "reconcile: booking confirmed without a webhook",
                    extra={"fields": {**fields, "booking_id": done.booking_id}},
                )
            elif done.outcome is Outcome.REFUNDED:
                log.warning(
                    "reconcile: payment refunded without a webhook",
                    extra={"fields": {**fields, "cause": done.cause}},
                )
            outcomes[done.outcome.value] += 1
            RECONCILED.labels(done.outcome.value).inc()
        SWEEPS.inc()
        return outcomes
