"""Never a payment without a booking, even when the provider stops retrying its webhook.

The webhook use case (edge/bff/webhook.py) confirms a booking when the provider tells us a payment
succeeded.  If that never happens — the webhook was lost, every delivery failed, the provider gave up
— the payment stays SUCCEEDED and unsettled.  The reconciler, a background task of the edge, asks
PaymentService for such payments once they are older than a grace period (PaymentService itself
asks the provider, through the stripe SDK, about open sessions with no news, so a session paid
without a webhook shows up too) and finishes each one exactly as the webhook would have:
ConfirmBooking (idempotent: an existing booking comes back as is) then SettlePayment, or, when the
slot is gone, RefundPayment (idempotent per payment at the provider).  Replicas may run it at the
same time: every step is idempotent, so a payment ends in one booking or one refund.
"""

from __future__ import annotations

import logging
from collections import Counter as Tally

import grpc
from prometheus_client import Counter

from edge.bff.webhook import REFUND_REASON_TEXT, REFUND_REASONS
from petpro.errors import Kind
from petpro.upstream import from_rpc_error
from petpro_api.booking.v1 import booking_pb2, booking_pb2_grpc
from petpro_api.payment.v1 import payment_pb2, payment_pb2_grpc

log = logging.getLogger("edge.reconcile")

RECONCILED = Counter(
    "petpro_edge_reconciled_payments_total",
    "Succeeded payments settled by the reconciler (not by a webhook), by outcome",
    ["outcome"],
)

# the order cannot be fulfilled: the money goes back
_LOST = REFUND_REASONS | {"RESERVATION_NOT_FOUND"}


class Reconciler:
    def __init__(
        self,
        payment: payment_pb2_grpc.PaymentServiceAsyncStub,
        booking: booking_pb2_grpc.BookingServiceAsyncStub,
        *,
        grace_seconds: int,
        rpc_timeout: float,
        batch: int = 100,
    ) -> None:
        self.payment = payment
        self.booking = booking
        self.grace = grace_seconds
        self.timeout = rpc_timeout
        self.batch = batch

    async def run_once(self) -> Tally[str]:
        """One pass over the unsettled payments; outcomes counted ("confirmed", "refunded", "retry")."""
        found = await self.payment.ListUnsettledPayments(
            payment_pb2.ListUnsettledPaymentsRequest(older_than_seconds=self.grace, page_size=self.batch),
            timeout=self.timeout,
        )
        outcomes: Tally[str] = Tally()
        for p in found.payments:
            outcome = await self.settle(p)
            outcomes[outcome] += 1
            RECONCILED.labels(outcome).inc()
        return outcomes

    async def settle(self, p: payment_pb2.Payment) -> str:
        fields = {"payment_id": p.payment_id, "lock_id": p.order_ref}
        try:
            confirmed = await self.booking.ConfirmBooking(
                booking_pb2.ConfirmBookingRequest(reservation_lock_id=p.order_ref, payment_id=p.payment_id),
                timeout=self.timeout,
            )
        except grpc.aio.AioRpcError as exc:
            err = from_rpc_error(exc)
            if err.kind in (
                Kind.FAILED_PRECONDITION,
                Kind.ABORTED,
                Kind.NOT_FOUND,
                Kind.INVALID_ARGUMENT,
            ) and (err.reason in _LOST or err.kind == Kind.INVALID_ARGUMENT):
                return await self._refund(p, err.reason)
            log.warning(
                "reconcile: booking not confirmed yet",
                extra={"fields": {**fields, "code": err.kind.name, "reason": err.reason}},
            )
            return "retry"
        try:
            await self.payment.SettlePayment(
                payment_pb2.SettlePaymentRequest(payment_id=p.payment_id, order_id=confirmed.booking_id),
                timeout=self.timeout,
            )
        except grpc.aio.AioRpcError as exc:
            log.warning(
                "reconcile: payment not settled", extra={"fields": {**fields, "code": exc.code().name}}
            )
            return "retry"
        log.warning(
            "reconcile: booking confirmed without a webhook",
            extra={"fields": {**fields, "booking_id": confirmed.booking_id}},
        )
        return "confirmed"

    async def _refund(self, p: payment_pb2.Payment, cause: str) -> str:
        try:
            await self.payment.RefundPayment(
                payment_pb2.RefundPaymentRequest(
                    payment_id=p.payment_id,
                    reason=REFUND_REASON_TEXT,
                    request_id=f"fulfilment-{p.payment_id}",
                ),
                timeout=self.timeout,
            )
        except grpc.aio.AioRpcError as exc:
            log.error(
                "reconcile: refund failed",
                extra={"fields": {"payment_id": p.payment_id, "code": exc.code().name}},
            )
            return "retry"
        log.warning(
            "reconcile: payment refunded without a webhook",
            extra={"fields": {"payment_id": p.payment_id, "lock_id": p.order_ref, "cause": cause}},
        )
        return "refunded"
