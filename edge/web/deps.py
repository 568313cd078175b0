"""What the edge's HTTP app talks to (stubs, timeouts, the shutdown signal)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import grpc

from edge.fulfilment import PaymentFulfilment
from petpro import grpc_client
from petpro_api.auth.v1 import auth_pb2_grpc
from petpro_api.booking.v1 import booking_pb2_grpc
from petpro_api.notification.v1 import clinic_feed_pb2_grpc, notification_pb2_grpc
from petpro_api.payment.v1 import payment_pb2_grpc


@dataclass
class HttpDeps:
    """What the HTTP app talks to.  ``rpc_timeout``: deadline of each outgoing RPC.

    The clinic dashboard needs ``auth`` (token validation) and ``clinic_feed`` (its live stream;
    each Subscribe call lasts at most ``feed_call_seconds``, then it is renewed from the last cursor);
    without them its API answers 503.  ``closing`` is set when the edge shuts down: open streams end."""

    payment: payment_pb2_grpc.PaymentServiceAsyncStub
    booking: booking_pb2_grpc.BookingServiceAsyncStub
    rpc_timeout: float = 5.0
    channels: list[grpc.aio.Channel] = field(default_factory=list)
    auth: auth_pb2_grpc.AuthServiceAsyncStub | None = None
    clinic_feed: clinic_feed_pb2_grpc.ClinicFeedServiceAsyncStub | None = None
    # incoming texts (/webhooks/twilio/sms: STOP / START) go to notif_worker
    notification: notification_pb2_grpc.NotificationServiceAsyncStub | None = None
    # payment fulfilment (its webhook entry point serves /webhooks/stripe); by default over ``payment``
    # and ``booking`` (the edge passes the one its sweep runs; tests may pass one over fakes of its ports)
    fulfilment: PaymentFulfilment | None = None
    token_cache_seconds: float = 5.0
    feed_heartbeat_seconds: float = 15.0
    feed_call_seconds: float = 3600.0
    closing: asyncio.Event = field(default_factory=asyncio.Event)

    @classmethod
    def connect(cls, payment_addr: str, booking_addr: str, **kwargs: Any) -> HttpDeps:
        """Channels (deadlines, request-id/trace propagation, retries of the methods the protos
        declare idempotent) to PaymentService and BookingService.  Close them with :meth:`aclose`."""
        payment_ch = grpc_client.channel(payment_addr, services=["petpro.payment.v1.PaymentService"])
        booking_ch = grpc_client.channel(booking_addr, services=["petpro.booking.v1.BookingService"])
        return cls(
            payment=payment_pb2_grpc.PaymentServiceStub(payment_ch),
            booking=booking_pb2_grpc.BookingServiceStub(booking_ch),
            channels=[payment_ch, booking_ch],
            **kwargs,
        )

    async def aclose(self) -> None:
        for ch in self.channels:
            await ch.close()
