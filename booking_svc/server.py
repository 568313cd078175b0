"""booking_svc composition root."""

from __future__ import annotations

from datetime import timedelta

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from booking_svc.handlers import BookingHandlers
from booking_svc.repository import SCHEMA, BookingRepository
from booking_svc.service import BookingServicer, encode_booking_created
from petpro import events, grpc_server, telemetry
from petpro.db import Database
from petpro.outbox import OutboxRelay
from petpro.settings import ServiceSettings, load
from petpro_api.booking.v1 import booking_pb2_grpc


class BookingSettings(ServiceSettings):
    component = "booking"
    model_config = SettingsConfigDict(env_prefix="BOOKING_", env_file=".env", extra="ignore")

    hold_ttl_seconds: int = Field(default=600, ge=1, le=86_400, description="how long a slot is held for payment")
    expiry_sweep_seconds: float = Field(default=5.0, gt=0, description="how often expired holds are released")
    db_pool_size: int = Field(default=10, ge=1, le=100)
    catalog_cache_seconds: float = Field(default=5.0, ge=0, description="how stale catalog reads may be")
    outbox_batch_size: int = Field(default=500, ge=1, le=10_000)


def build(settings: BookingSettings) -> grpc_server.App:
    db = Database(settings.url("database_url"), SCHEMA, app_name="booking_svc", pool_size=settings.db_pool_size)

    uow, read = db.repositories(BookingRepository)
    handlers = BookingHandlers(uow, encode_booking_created, hold_ttl=timedelta(seconds=settings.hold_ttl_seconds),
                               read=read, catalog_ttl=settings.catalog_cache_seconds,
                               traceparent=telemetry.current_traceparent)

    relay = OutboxRelay(
        db, lambda: events.producer(settings.url("kafka_bootstrap_servers"), "booking_svc-outbox"),
        source="/petpro/booking_svc", listen_dsn=settings.url("database_url"), batch_size=settings.outbox_batch_size,
        end_offsets=lambda parts: events.end_offsets(settings.url("kafka_bootstrap_servers"), parts),
    )
    return grpc_server.App(
        name="booking_svc",
        settings=settings,
        services=[grpc_server.Registration(
            booking_pb2_grpc.add_BookingServiceServicer_to_server, BookingServicer(handlers),
            "petpro.booking.v1.BookingService",
        )],
        background=[grpc_server.periodic("booking_svc.hold_expiry", settings.expiry_sweep_seconds,
                                               handlers.expire_due), relay.run],
        on_stop=[db.close],
    )


def main() -> None:
    grpc_server.main(build, load(BookingSettings))
