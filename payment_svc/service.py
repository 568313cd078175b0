"""PaymentService servicer: request → command → handler → response, and the pb ↔ domain conversions."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import grpc

from payment_svc.domain import Payment
from payment_svc.handlers import CreateSession, PaymentHandlers, RefundCommand
from petpro.convert import dt, ts, uid
from petpro.errors import InvalidArgument
from petpro_api.common.v1 import money_pb2
from petpro_api.payment.v1 import payment_pb2, payment_pb2_grpc


def payment_pb(p: Payment) -> payment_pb2.Payment:
    return payment_pb2.Payment(
        payment_id=str(p.id),
        order_ref=p.order_ref,
        status=payment_pb2.PaymentStatus.Value(f"PAYMENT_STATUS_{p.status.value}"),
        amount=money_pb2.Money(amount_minor=p.amount_minor, currency=p.currency),
        session_id=p.session_id or "",
        provider_payment_id=p.provider_payment_id or "",
        refund_id=p.refund_id or "",
        customer_email=p.customer_email,
        create_time=ts(p.created_at),
        update_time=ts(p.updated_at),
        payment_url=p.payment_url or "",
    )


class PaymentServicer(payment_pb2_grpc.PaymentServiceServicer):
    def __init__(self, handlers: PaymentHandlers) -> None:
        self.handlers = handlers

    async def CreatePaymentSession(
        self, request: payment_pb2.CreatePaymentSessionRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> payment_pb2.CreatePaymentSessionResponse:
        p = await self.handlers.sessions.create(
            CreateSession(
                request_id=request.request_id,
                order_ref=request.order_ref,
                amount_minor=request.amount.amount_minor,
                currency=request.amount.currency,
                customer_email=request.customer_email,
                description=request.description,
                success_url=request.success_url,
                cancel_url=request.cancel_url,
                expires_at=dt(request.expires_at) if request.HasField("expires_at") else None,
                customer_user_id=uid(request.customer_user_id, "customer_user_id")
                if request.customer_user_id
                else None,
            )
        )
        return payment_pb2.CreatePaymentSessionResponse(
            payment_id=str(p.id),
            session_id=p.session_id or "",
            payment_url=p.payment_url or "",
            expires_at=ts(p.expires_at),
        )

    async def GetPayment(
        self, request: payment_pb2.GetPaymentRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> payment_pb2.GetPaymentResponse:
        if bool(request.payment_id) == bool(request.order_ref):
            raise InvalidArgument.field(
                "payment_id", "give exactly one of payment_id and order_ref", "ONE_OF"
            )
        if request.order_ref:
            return payment_pb2.GetPaymentResponse(
                payment=payment_pb(await self.handlers.sessions.for_order(request.order_ref))
            )
        return payment_pb2.GetPaymentResponse(
            payment=payment_pb(await self.handlers.sessions.get(uid(request.payment_id, "payment_id")))
        )

    async def HandleWebhook(
        self, request: payment_pb2.HandleWebhookRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> payment_pb2.HandleWebhookResponse:
        out = await self.handlers.webhooks.handle(request.payload, request.signature)
        return payment_pb2.HandleWebhookResponse(
            event_id=out.event_id,
            event_type=out.event_type,
            duplicate=out.duplicate,
            payment=payment_pb(out.payment) if out.payment else None,
        )

    async def RefundPayment(
        self, request: payment_pb2.RefundPaymentRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> payment_pb2.RefundPaymentResponse:
        p, r = await self.handlers.refunds.refund(
            RefundCommand(
                payment_id=uid(request.payment_id, "payment_id"),
                request_id=request.request_id,
                reason=request.reason,
                amount_minor=request.amount.amount_minor if request.HasField("amount") else None,
                currency=request.amount.currency,
            )
        )
        return payment_pb2.RefundPaymentResponse(
            payment=payment_pb(p),
            refund=payment_pb2.PaymentRefund(
                request_id=r.request_id,
                provider_refund_id=r.provider_refund_id,
                amount=money_pb2.Money(amount_minor=r.amount_minor, currency=r.currency),
                status=r.status,
                update_time=ts(r.updated_at),
            ),
        )

    async def ListUnsettledPayments(
        self, request: payment_pb2.ListUnsettledPaymentsRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> payment_pb2.ListUnsettledPaymentsResponse:
        found = await self.handlers.reconciliation.unsettled(
            timedelta(seconds=request.older_than_seconds), request.page_size or 100
        )
        return payment_pb2.ListUnsettledPaymentsResponse(payments=[payment_pb(p) for p in found])

    async def SettlePayment(
        self, request: payment_pb2.SettlePaymentRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> payment_pb2.SettlePaymentResponse:
        p = await self.handlers.reconciliation.settle(uid(request.payment_id, "payment_id"), request.order_id)
        return payment_pb2.SettlePaymentResponse(payment=payment_pb(p))

    async def SettlePayments(
        self, request: payment_pb2.SettlePaymentsRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> payment_pb2.SettlePaymentsResponse:
        unsettled = await self.handlers.reconciliation.settle_many(
            [(uid(s.payment_id, "settlements.payment_id"), s.order_id) for s in request.settlements]
        )
        return payment_pb2.SettlePaymentsResponse(unsettled_payment_ids=[str(p) for p in unsettled])

    async def ExpirePaymentSession(
        self, request: payment_pb2.ExpirePaymentSessionRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> payment_pb2.ExpirePaymentSessionResponse:
        return payment_pb2.ExpirePaymentSessionResponse(
            payment=payment_pb(await self.handlers.sessions.expire(request.session_id))
        )

    async def ExportCustomerData(
        self, request: payment_pb2.ExportCustomerDataRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> payment_pb2.ExportCustomerDataResponse:
        out = payment_pb2.ExportCustomerDataResponse()
        out.data.update(
            await self.handlers.customers.export(list(request.order_refs), request.customer_email)
        )
        return out
