"""Booking's client of PaymentService: the RefundPort over gRPC (RefundPayment)."""

from __future__ import annotations

import uuid

from booking_svc.ports import RefundResult
from petpro_api.common.v1 import money_pb2
from petpro_api.payment.v1 import payment_pb2, payment_pb2_grpc


class PaymentRefunds:
    """RefundPort over gRPC: PaymentService.RefundPayment, idempotent on the request id."""

    def __init__(self, stub: payment_pb2_grpc.PaymentServiceStub, timeout: float = 15.0) -> None:
        self.stub = stub
        self.timeout = timeout

    async def refund(
        self, payment_id: uuid.UUID, amount_minor: int, currency: str, request_id: str, reason: str
    ) -> RefundResult:
        r: payment_pb2.RefundPaymentResponse = await self.stub.RefundPayment(  # type: ignore[misc]
            payment_pb2.RefundPaymentRequest(
                payment_id=str(payment_id),
                reason=reason[:500],
                request_id=request_id,
                amount=money_pb2.Money(amount_minor=amount_minor, currency=currency),
            ),
            timeout=self.timeout,
        )
        return RefundResult(r.refund.provider_refund_id, r.refund.status)
