"""The edge's reconciler decides like the webhook would: confirm then settle, refund when the slot
is gone, and leave the payment for the next pass when a service is only unavailable."""

from __future__ import annotations

import grpc
import pytest

from edge.bff.reconcile import Reconciler
from petpro.interceptors import rich_status
from petpro_api.booking.v1 import booking_pb2
from petpro_api.payment.v1 import payment_pb2


class _RpcError(grpc.aio.AioRpcError):
    def __init__(self, code: grpc.StatusCode, reason: str) -> None:
        status = rich_status(code, "test", reason)
        md = grpc.aio.Metadata(("grpc-status-details-bin", status.SerializeToString()))
        super().__init__(code, grpc.aio.Metadata(), md, details="test")


class FakePayment:
    def __init__(self, payments: list[payment_pb2.Payment]) -> None:
        self.payments = payments
        self.settled: list[tuple[str, str]] = []
        self.refunded: list[str] = []

    async def ListUnsettledPayments(self, request, timeout=None):
        return payment_pb2.ListUnsettledPaymentsResponse(payments=self.payments)

    async def SettlePayment(self, request, timeout=None):
        self.settled.append((request.payment_id, request.order_id))
        return payment_pb2.SettlePaymentResponse()

    async def RefundPayment(self, request, timeout=None):
        self.refunded.append(request.payment_id)
        return payment_pb2.RefundPaymentResponse()


class FakeBooking:
    def __init__(self, outcomes: dict[str, object]) -> None:
        self.outcomes = outcomes  # lock id → booking id, or an exception to raise

    async def ConfirmBooking(self, request, timeout=None):
        out = self.outcomes[request.reservation_lock_id]
        if isinstance(out, Exception):
            raise out
        return booking_pb2.ConfirmBookingResponse(booking_id=str(out))


def _payment(n: int) -> payment_pb2.Payment:
    return payment_pb2.Payment(
        payment_id=f"p{n}", order_ref=f"lock{n}", status=payment_pb2.PAYMENT_STATUS_SUCCEEDED
    )


@pytest.mark.parametrize(
    ("outcome", "expected", "settled", "refunded"),
    [
        ("b1", "confirmed", [("p1", "b1")], []),
        (_RpcError(grpc.StatusCode.FAILED_PRECONDITION, "SLOT_NO_LONGER_AVAILABLE"), "refunded", [], ["p1"]),
        (_RpcError(grpc.StatusCode.FAILED_PRECONDITION, "RESERVATION_CLOSED"), "refunded", [], ["p1"]),
        (_RpcError(grpc.StatusCode.NOT_FOUND, "RESERVATION_NOT_FOUND"), "refunded", [], ["p1"]),
        (_RpcError(grpc.StatusCode.UNAVAILABLE, "UNAVAILABLE"), "retry", [], []),
        (_RpcError(grpc.StatusCode.FAILED_PRECONDITION, "SOMETHING_ELSE"), "retry", [], []),
    ],
)
async def test_one_payment(outcome, expected, settled, refunded):
    payment, booking = FakePayment([_payment(1)]), FakeBooking({"lock1": outcome})
    tally = await Reconciler(payment, booking, grace_seconds=60, rpc_timeout=1).run_once()  # type: ignore[arg-type]
    assert dict(tally) == {expected: 1}
    assert (payment.settled, payment.refunded) == (settled, refunded)
