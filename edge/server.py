"""edge composition root: MobileService (the BFF) over gRPC — Envoy transcodes REST to it —, the
small HTTP app behind Envoy (webhooks, OpenAPI, dashboard) and payment fulfilment (its webhook entry
point behind the HTTP app, its sweep for lost webhooks as a background task), in one process and
event loop."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from edge.bff.service import MobileServicer, Stubs
from edge.fulfilment import GrpcBookings, GrpcPayments, PaymentFulfilment
from edge.web.app import create_app, serve_http
from edge.web.deps import HttpDeps
from petpro import grpc_client, grpc_server
from petpro.authn import TokenCache
from petpro.settings import ServiceSettings, load
from petpro_api.auth.v1 import auth_pb2_grpc
from petpro_api.booking.v1 import booking_pb2_grpc
from petpro_api.mobile.v1 import mobile_pb2_grpc
from petpro_api.notification.v1 import clinic_feed_pb2_grpc, notification_pb2_grpc
from petpro_api.payment.v1 import payment_pb2_grpc

# The services each upstream channel carries; their retry lists come from the protos' method policy.
PEERS: dict[str, tuple[str, ...]] = {
    "auth": ("petpro.auth.v1.AuthService",),
    "booking": ("petpro.booking.v1.BookingService",),
    "payment": ("petpro.payment.v1.PaymentService",),
    "notif": ("petpro.notification.v1.NotificationService", "petpro.notification.v1.ClinicFeedService"),
}


class EdgeSettings(ServiceSettings):
    component = "edge"
    model_config = SettingsConfigDict(env_prefix="EDGE_", env_file=".env", extra="ignore")

    http_port: int | None = Field(default=None, ge=1, le=65535, description="the HTTP app behind Envoy")
    token_cache_seconds: float = Field(default=5.0, ge=0, le=60)
    upstream_timeout_seconds: float = Field(default=5.0, gt=0)
    reconcile_seconds: float = Field(
        default=30.0, gt=0, description="how often the sweep looks for payments whose webhook was lost"
    )
    reconcile_grace_seconds: int = Field(
        default=120,
        ge=0,
        le=86400,
        description="a succeeded payment unsettled this long lost its webhook: the sweep fulfils it",
    )
    settle_batch_seconds: float = Field(
        default=0.5,
        ge=0,
        le=10,
        description="the webhook path's confirmed payments are settled together (one SettlePayments "
        "call) this often; 0: each within its webhook's call (SettlePayment)",
    )


def build(settings: EdgeSettings) -> grpc_server.App:
    channels = {
        name: grpc_client.channel(
            settings.peer(name), services=services, default_timeout=settings.upstream_timeout_seconds
        )
        for name, services in PEERS.items()
    }
    stubs = Stubs(
        auth=auth_pb2_grpc.AuthServiceStub(channels["auth"]),
        booking=booking_pb2_grpc.BookingServiceStub(channels["booking"]),
        payment=payment_pb2_grpc.PaymentServiceStub(channels["payment"]),
        notification=notification_pb2_grpc.NotificationServiceStub(channels["notif"]),
    )

    fulfilment = PaymentFulfilment(
        GrpcPayments(stubs.payment, settings.upstream_timeout_seconds),
        GrpcBookings(stubs.booking, settings.upstream_timeout_seconds),
        grace_seconds=settings.reconcile_grace_seconds,
        settle_every=settings.settle_batch_seconds,
    )
    http_deps = HttpDeps(
        payment=stubs.payment,
        booking=stubs.booking,
        auth=stubs.auth,
        clinic_feed=clinic_feed_pb2_grpc.ClinicFeedServiceStub(channels["notif"]),
        notification=stubs.notification,
        token_cache_seconds=settings.token_cache_seconds,
        rpc_timeout=settings.upstream_timeout_seconds,
        fulfilment=fulfilment,
    )
    http = create_app(http_deps)
    mobile = MobileServicer(stubs, token_cache=TokenCache(settings.token_cache_seconds))
    http_port = settings.http_port or settings.stack.port("edge_http")

    async def end_streams() -> None:  # the dashboards' live streams end; browsers reconnect elsewhere/later
        http_deps.closing.set()
        mobile.close()  # the reservation long-polls answer now (with the state as it is)

    background = [
        lambda: serve_http(http, settings.bind_host, http_port, graceful_timeout=settings.grace_seconds),
        grpc_server.periodic("edge.fulfilment.sweep", settings.reconcile_seconds, fulfilment.sweep),
    ]
    on_stop: list[Callable[[], Awaitable[None]]] = []
    if (settlements := fulfilment.settlements) is not None:
        background.append(
            grpc_server.periodic("edge.fulfilment.settle", settlements.every, settlements.flush)
        )
        on_stop.append(settlements.close)

    async def close_channels() -> None:
        for ch in channels.values():
            await ch.close()

    return grpc_server.App(
        name="edge",
        settings=settings,
        services=[
            grpc_server.Registration(
                mobile_pb2_grpc.add_MobileServiceServicer_to_server,
                mobile,
                "petpro.mobile.v1.MobileService",
                authenticator=mobile.authn,
            )
        ],
        background=background,
        on_shutdown=[end_streams],
        on_stop=[close_channels, *on_stop],  # run in reverse: the last flush before the channels close
    )


def main() -> None:
    grpc_server.main(build, load(EdgeSettings))
