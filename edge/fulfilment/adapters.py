"""The fulfilment's ports over gRPC: PaymentService (HandleWebhook, SettlePayment, SettlePayments,
RefundPayment, ListUnsettledPayments) and BookingService (ConfirmBooking), each call with its deadline and its error
re-raised as :class:`petpro.upstream.UpstreamError`."""

from __future__ import annotations

from typing import Any

import grpc

from edge.fulfilment.ports import PaidPayment, VerifiedEvent
from petpro.upstream import UpstreamError, from_rpc_error
from petpro_api.booking.v1 import booking_pb2, booking_pb2_grpc
from petpro_api.payment.v1 import payment_pb2, payment_pb2_grpc


async def _call(rpc: Any, request: Any, timeout: float) -> Any:
    try:
        return await rpc(request, timeout=timeout)
    except grpc.aio.AioRpcError as exc:
        raise from_rpc_error(exc) from None


class GrpcPayments:
    def __init__(self, stub: payment_pb2_grpc.PaymentServiceAsyncStub, timeout: float) -> None:
        self.stub = stub
        self.timeout = timeout

    async def verify(self, payload: bytes, signature: str) -> VerifiedEvent:
        r = await _call(
            self.stub.HandleWebhook,
            payment_pb2.HandleWebhookRequest(payload=payload, signature=signature),
            self.timeout,
        )
        payment = r.payment
        return VerifiedEvent(
            event_id=r.event_id,
            event_type=r.event_type,
            duplicate=r.duplicate,
            payment_id=payment.payment_id if r.HasField("payment") else "",
            order_ref=payment.order_ref,
            succeeded=r.HasField("payment") and payment.status == payment_pb2.PAYMENT_STATUS_SUCCEEDED,
        )

    async def settle(self, payment_id: str, booking_id: str) -> None:
        await _call(
            self.stub.SettlePayment,
            payment_pb2.SettlePaymentRequest(payment_id=payment_id, order_id=booking_id),
            self.timeout,
        )

    async def settle_many(self, settlements: list[tuple[str, str]]) -> list[str]:
        request = payment_pb2.SettlePaymentsRequest(
            settlements=[
                payment_pb2.SettlePaymentRequest(payment_id=payment_id, order_id=booking_id)
                for payment_id, booking_id in settlements
            ]
        )
        try:
            r = await self.stub.SettlePayments(request, timeout=self.timeout)
        except grpc.aio.AioRpcError as exc:
            if exc.code() is grpc.StatusCode.UNIMPLEMENTED:
                # a payment_svc older than SettlePayments (during a rollout, the edge first): one by one
                return await self._settle_each(settlements)
            raise from_rpc_error(exc) from None
        return list(r.unsettled_payment_ids)

    async def _settle_each(self, settlements: list[tuple[str, str]]) -> list[str]:
        left = []
        for payment_id, booking_id in settlements:
            try:
                await self.settle(payment_id, booking_id)
            except UpstreamError:
                left.append(payment_id)
        return left

    async def refund(self, payment_id: str, request_id: str, reason: str) -> None:
        await _call(
            self.stub.RefundPayment,
            payment_pb2.RefundPaymentRequest(payment_id=payment_id, request_id=request_id, reason=reason),
            self.timeout,
        )

    async def unsettled(self, older_than_seconds: int, limit: int) -> list[PaidPayment]:
        r = await _call(
            self.stub.ListUnsettledPayments,
            payment_pb2.ListUnsettledPaymentsRequest(older_than_seconds=older_than_seconds, page_size=limit),
            self.timeout,
        )
        return [PaidPayment(p.payment_id, p.order_ref) for p in r.payments]


class GrpcBookings:
    def __init__(self, stub: booking_pb2_grpc.BookingServiceAsyncStub, timeout: float) -> None:
        self.stub = stub
        self.timeout = timeout

    async def confirm(self, lock_id: str, payment_id: str) -> str:
        r = await _call(
            self.stub.ConfirmBooking,
            booking_pb2.ConfirmBookingRequest(reservation_lock_id=lock_id, payment_id=payment_id),
            self.timeout,
        )
        return str(r.booking_id)
