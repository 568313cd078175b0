"""The payment-webhook use case: verify → confirm → refund if the slot is lost.

A signed provider event arrives (raw body + signature).  PaymentService verifies, records and
dedupes it (:meth:`Payments.verify`); for a succeeded payment BookingService confirms the hold it
paid for (:meth:`Bookings.confirm`, lock id = the payment's order reference).  When the slot can no
longer be had (the hold expired and somebody else took the slot, or the reservation is closed), the
payment is refunded (:meth:`Payments.refund`), so no payment without a booking remains.

Only Checkout's fulfilment events (``checkout.session.completed``, ``…async_payment_succeeded``)
confirm; the same payment's ``payment_intent.succeeded`` is verified, recorded and acknowledged
(``RECORDED``), so each payment is confirmed once, not once per event.

The outcome tells the HTTP route what to answer: only ``CONFIRMED``, ``REFUNDED``, ``IGNORED`` and
``RECORDED`` are a 2xx; ``REJECTED`` (bad signature, malformed event) is a 400 the provider should not retry, and
``RETRY`` (anything transient) is a 503, so the provider delivers the event again.  A replay
(``duplicate``) is confirmed again on purpose: ConfirmBooking is idempotent, and a first delivery
whose confirmation failed must still end in a booking when it is retried.

The ports are Protocols raising :class:`petpro.upstream.UpstreamError` (code kind, reason, domain):
:class:`GrpcPayments` / :class:`GrpcBookings` adapt the gRPC stubs; unit tests pass fakes.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol

import grpc

from petpro.errors import Kind
from petpro.upstream import UpstreamError, from_rpc_error
from petpro_api.booking.v1 import booking_pb2, booking_pb2_grpc
from petpro_api.payment.v1 import payment_pb2, payment_pb2_grpc

log = logging.getLogger("edge.webhook")

# ConfirmBooking failures that mean "this payment will never get its booking": refund it.
REFUND_REASONS = frozenset({"SLOT_NO_LONGER_AVAILABLE", "RESERVATION_CLOSED", "SLOT_UNAVAILABLE"})
REFUND_REASON_TEXT = "slot_unavailable"
# Stripe sends a paid Checkout as both payment_intent.succeeded and checkout.session.completed; its
# advice for Checkout is to fulfil on checkout.session.completed (async_payment_succeeded for delayed
# methods).  The other events are verified and recorded by PaymentService, then acknowledged: one
# ConfirmBooking per payment instead of two.
FULFILMENT_EVENTS = frozenset({"checkout.session.completed", "checkout.session.async_payment_succeeded"})
# A verification failure of these kinds is the sender's fault (forged, stale, malformed): no retry.
REJECT_KINDS = frozenset({Kind.INVALID_ARGUMENT, Kind.UNAUTHENTICATED})


class Outcome(StrEnum):
    CONFIRMED = "confirmed"  # the booking is committed
    REFUNDED = "refunded"  # the slot was gone: the payment was refunded
    IGNORED = "ignored"  # a verified event with nothing to do (not a succeeded payment)
    RECORDED = "recorded"  # a succeeded payment's other event: recorded, its fulfilment event confirms
    REJECTED = "rejected"  # not a valid event: 400, the sender should not retry
    RETRY = "retry"  # could not be handled now: 503, the sender retries


@dataclass(frozen=True)
class VerifiedEvent:
    """A verified, recorded provider event and the payment it is about (after applying it)."""

    event_id: str
    event_type: str
    duplicate: bool = False
    payment_id: str = ""  # "" when the event is about no known payment
    order_ref: str = ""  # the reservation lock id the payment is for
    succeeded: bool = False


@dataclass(frozen=True)
class WebhookResult:
    outcome: Outcome
    event: VerifiedEvent | None = None
    booking_id: str = ""
    error: UpstreamError | None = None  # why it was REJECTED / must be retried
    step: str = ""  # "verify" | "confirm" | "refund": where it failed

    @property
    def payment_id(self) -> str:
        return self.event.payment_id if self.event else ""


class Payments(Protocol):
    async def verify(self, payload: bytes, signature: str) -> VerifiedEvent:
        """Verify the signature, record the event once, apply it to its payment."""
        ...

    async def refund(self, payment_id: str, reason: str) -> None:
        """Refund the payment (idempotent per payment)."""
        ...


class Bookings(Protocol):
    async def confirm(self, lock_id: str, payment_id: str) -> str:
        """Turn the hold into a booking (idempotent per lock); returns the booking id."""
        ...


class HandleWebhook:
    """The use case.  ``await HandleWebhook(payments, bookings)(payload, signature)``."""

    def __init__(self, payments: Payments, bookings: Bookings) -> None:
        self.payments = payments
        self.bookings = bookings

    async def __call__(self, payload: bytes, signature: str) -> WebhookResult:
        try:
            event = await self.payments.verify(payload, signature)
        except UpstreamError as err:
            if err.kind in REJECT_KINDS:
                log.info("webhook rejected", extra={"fields": {"reason": err.reason}})
                return WebhookResult(Outcome.REJECTED, error=err, step="verify")
            log.warning(
                "webhook not handled", extra={"fields": {"kind": err.kind.name, "reason": err.reason}}
            )
            return WebhookResult(Outcome.RETRY, error=err, step="verify")

        if not event.payment_id or not event.succeeded:
            return WebhookResult(Outcome.IGNORED, event)
        if event.event_type not in FULFILMENT_EVENTS:
            return WebhookResult(Outcome.RECORDED, event)

        try:
            booking_id = await self.bookings.confirm(event.order_ref, event.payment_id)
        except UpstreamError as err:
            if err.kind in (Kind.FAILED_PRECONDITION, Kind.ABORTED) and err.reason in REFUND_REASONS:
                return await self._refund(event, err)
            log.warning(
                "booking not confirmed",
                extra={"fields": {"kind": err.kind.name, "reason": err.reason, "lock_id": event.order_ref}},
            )
            return WebhookResult(Outcome.RETRY, event, error=err, step="confirm")
        log.info(
            "booking confirmed", extra={"fields": {"booking_id": booking_id, "payment_id": event.payment_id}}
        )
        return WebhookResult(Outcome.CONFIRMED, event, booking_id=booking_id)

    async def _refund(self, event: VerifiedEvent, cause: UpstreamError) -> WebhookResult:
        try:
            await self.payments.refund(event.payment_id, REFUND_REASON_TEXT)
        except UpstreamError as err:
            log.error(
                "refund failed",
                extra={
                    "fields": {"kind": err.kind.name, "reason": err.reason, "payment_id": event.payment_id}
                },
            )
            return WebhookResult(Outcome.RETRY, event, error=err, step="refund")
        log.info(
            "payment refunded",
            extra={
                "fields": {"payment_id": event.payment_id, "lock_id": event.order_ref, "cause": cause.reason}
            },
        )
        return WebhookResult(Outcome.REFUNDED, event)


# --------------------------------------------------------------------------------------------------
# gRPC adapters
# --------------------------------------------------------------------------------------------------


async def _call(rpc: Any, request: Any, timeout: float) -> Any:
    try:
        return await rpc(request, timeout=timeout)
    except grpc.aio.AioRpcError as exc:
        raise from_rpc_error(exc) from None


class GrpcPayments:
    def __init__(self, stub: payment_pb2_grpc.PaymentServiceAsyncStub, timeout: float) -> None:
        self.stub, self.timeout = stub, timeout

    async def verify(self, payload: bytes, signature: str) -> VerifiedEvent:
        r = await _call(
            self.stub.HandleWebhook,
            payment_pb2.HandleWebhookRequest(payload=payload, signature=signature),
            self.timeout,
        )
        p = r.payment
        return VerifiedEvent(
            event_id=r.event_id,
            event_type=r.event_type,
            duplicate=r.duplicate,
            payment_id=p.payment_id if r.HasField("payment") else "",
            order_ref=p.order_ref,
            succeeded=r.HasField("payment") and p.status == payment_pb2.PAYMENT_STATUS_SUCCEEDED,
        )

    async def refund(self, payment_id: str, reason: str) -> None:
        await _call(
            self.stub.RefundPayment,
            payment_pb2.RefundPaymentRequest(
                payment_id=payment_id, reason=reason, request_id=f"fulfilment-{payment_id}"
            ),
            self.timeout,
        )


class GrpcBookings:
    def __init__(self, stub: booking_pb2_grpc.BookingServiceAsyncStub, timeout: float) -> None:
        self.stub, self.timeout = stub, timeout

    async def confirm(self, lock_id: str, payment_id: str) -> str:
        r = await _call(
            self.stub.ConfirmBooking,
            booking_pb2.ConfirmBookingRequest(reservation_lock_id=lock_id, payment_id=payment_id),
            self.timeout,
        )
        return str(r.booking_id)


__all__ = [
    "Bookings",
    "GrpcBookings",
    "GrpcPayments",
    "HandleWebhook",
    "Outcome",
    "Payments",
    "VerifiedEvent",
    "WebhookResult",
]
