"""booking_svc composition root."""

from __future__ import annotations

from datetime import timedelta

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from booking_svc.handlers import BookingHandlers
from booking_svc.repository import SCHEMA, BookingRepository
from booking_svc.service import BookingServicer, PaymentRefunds, encode_booking_change, encode_booking_created
from petpro import events, grpc_client, grpc_server, policy, telemetry
from petpro.db import Database
from petpro.outbox import OutboxRelay
from petpro.settings import ServiceSettings, load
from petpro_api.booking.v1 import booking_pb2_grpc
from petpro_api.payment.v1 import payment_pb2, payment_pb2_grpc


class BookingSettings(ServiceSettings):
    component = "booking"
    model_config = SettingsConfigDict(env_prefix="BOOKING_", env_file=".env", extra="ignore")

    hold_ttl_seconds: int = Field(default=600, ge=1, le=86_400, description="how long a slot is held for payment")
    expiry_sweep_seconds: float = Field(default=5.0, gt=0, description="how often expired holds are released")
    db_pool_size: int = Field(default=10, ge=1, le=100)
    catalog_cache_seconds: float = Field(default=5.0, ge=0, description="how stale catalog reads may be")
    outbox_batch_size: int = Field(default=500, ge=1, le=10_000)
    refund_sweep_seconds: float = Field(default=1.0, gt=0, description="how often owed refunds are sent/checked")
    refund_retry_max_seconds: float = Field(default=60.0, gt=0, description="longest back-off of a failing refund")


def build(settings: BookingSettings) -> grpc_server.App:
    db = Database(settings.url("database_url"), SCHEMA, app_name="booking_svc", pool_size=settings.db_pool_size)

    uow, read = db.repositories(BookingRepository)
    payment_channel = grpc_client.channel(
        settings.peer("payment"),
        idempotent=policy.idempotent_methods(payment_pb2.DESCRIPTOR.services_by_name["PaymentService"]))
    handlers = BookingHandlers(uow, encode_booking_created, hold_ttl=timedelta(seconds=settings.hold_ttl_seconds),
                               read=read, catalog_ttl=settings.catalog_cache_seconds,
                               traceparent=telemetry.current_traceparent, encode_change=encode_booking_change,
                               refunds=PaymentRefunds(payment_pb2_grpc.PaymentServiceStub(payment_channel)),
                               refund_retry_max=timedelta(seconds=settings.refund_retry_max_seconds))

    async def close_payment_channel() -> None:
        await payment_channel.close()

    relay = OutboxRelay(
        db, lambda: events.producer(settings.url("kafka_bootstrap_servers"), "booking_svc-outbox"),
        source="/petpro/booking_svc", listen_dsn=settings.url("database_url"), batch_size=settings.outbox_batch_size,
    )
    return grpc_server.App(
        name="booking_svc",
        settings=settings,
        services=[grpc_server.Registration(
            booking_pb2_grpc.add_BookingServiceServicer_to_server, BookingServicer(handlers),
            "petpro.booking.v1.BookingService",
        )],
        background=[grpc_server.periodic("booking_svc.hold_expiry", settings.expiry_sweep_seconds,
                                               handlers.expire_due),
                    grpc_server.periodic("booking_svc.refunds", settings.refund_sweep_seconds,
                                         handlers.dispatch_refunds),
                    relay.run],
        on_stop=[db.close, close_payment_channel],
    )


def main() -> None:
    grpc_server.main(build, load(BookingSettings))
