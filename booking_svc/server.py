"""booking_svc's composition root: ``BookingSettings``, ``build()`` wiring the adapters into the use cases and
the servicers, ``main()``."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import timedelta

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from booking_svc.adapters.codecs import encode_booking_change, encode_booking_created
from booking_svc.adapters.refunds import PaymentRefunds
from booking_svc.adapters.refusals import SqlRecheck
from booking_svc.adapters.repository import BookingRepository
from booking_svc.adapters.tables import SCHEMA
from booking_svc.adapters.watch import PgReservationChanges
from booking_svc.domain import OPEN_REFUND_STATES
from booking_svc.handlers import (
    CatalogHandlers,
    ClinicAdminHandlers,
    LifecycleHandlers,
    OwnerHandlers,
    PetHandlers,
    RefundHandlers,
    ReservationHandlers,
)
from booking_svc.ports import RefundPort, ReservationChanges, UnitOfWork
from booking_svc.service import BookingServicer, ClinicAdminServicer
from booking_svc.service.refusals import TakenSlots
from petpro import events, grpc_client, grpc_server, mesh, telemetry
from petpro.authn import Authenticator
from petpro.db import Database
from petpro.erasure import account_deleted_subscriber
from petpro.gauges import StateAgeGauges
from petpro.outbox import OutboxRelay
from petpro.settings import ServiceSettings, load
from petpro_api.auth.v1 import auth_pb2_grpc
from petpro_api.booking.v1 import booking_pb2_grpc, clinic_admin_pb2_grpc
from petpro_api.payment.v1 import payment_pb2_grpc


class BookingSettings(ServiceSettings):
    component = "booking"
    model_config = SettingsConfigDict(env_prefix="BOOKING_", env_file=".env", extra="ignore")

    hold_ttl_seconds: int = Field(
        default=600, ge=1, le=86_400, description="how long a slot is held for payment"
    )
    expiry_sweep_seconds: float = Field(default=5.0, gt=0, description="how often expired holds are released")
    db_pool_size: int = Field(default=10, ge=1, le=100)
    catalog_cache_entries: int = Field(
        default=4096, ge=1, description="catalog reads kept in memory (never stale)"
    )
    outbox_batch_size: int = Field(default=500, ge=1, le=10_000)
    refund_sweep_seconds: float = Field(
        default=1.0, gt=0, description="how often owed refunds are sent/checked"
    )
    refund_retry_max_seconds: float = Field(
        default=60.0, gt=0, description="longest back-off of a failing refund"
    )


def build(
    settings: BookingSettings,
    *,
    uow: UnitOfWork | None = None,
    read: UnitOfWork | None = None,
    refunds: RefundPort | None = None,
    changes: ReservationChanges | None = None,
) -> grpc_server.App:
    """The booking service.  Tests pass fakes of the ports (``uow``/``read``, ``refunds``, ``changes``)
    instead of the database and the payment service; the outbox relay then has nothing to relay and is
    not started (and without ``changes`` GetReservation answers at once: no long-poll)."""
    background: list[Callable[[], Awaitable[None]]] = []
    erasing = False
    on_stop: list[Callable[[], Awaitable[None]]] = []
    on_shutdown: list[Callable[[], Awaitable[None]]] = []
    db: Database | None = None
    statements: UnitOfWork | None = None  # (the tests' fakes: the reader)
    if uow is None:
        db = Database(
            settings.url("database_url"), SCHEMA, app_name="booking_svc", pool_size=settings.db_pool_size
        )
        uow, read = db.repositories(BookingRepository)
        statements = db.statement_repositories(BookingRepository)
        end_offsets = events.EndOffsets(settings.url("kafka_bootstrap_servers"))
        relay = OutboxRelay(
            db,
            lambda: events.producer(settings.url("kafka_bootstrap_servers"), "booking_svc-outbox"),
            source="/petpro/booking_svc",
            listen_dsn=settings.url("database_url"),
            batch_size=settings.outbox_batch_size,
            end_offsets=end_offsets,
        )
        background.append(relay.run)
        # GetReservation's long-poll: committed state changes from PostgreSQL (LISTEN), any replica's
        pg_changes = PgReservationChanges(settings.url("database_url"))
        background.append(pg_changes.run)
        on_shutdown.append(pg_changes.close)  # waiting long-polls answer now, before the drain
        changes = pg_changes
        erasing = True  # account.deleted is consumed with the database (not with test fakes)
        background.append(  # open refunds and the oldest one's age, for the alert rules
            StateAgeGauges(db, table="bookings", state="refund_state", since="cancelled_at",
                           states=[s.value for s in OPEN_REFUND_STATES], count=telemetry.REFUNDS_OPEN,
                           age=telemetry.REFUND_OLDEST_OPEN_AGE).run
        )  # fmt: skip
        on_stop += [db.close, lambda: asyncio.to_thread(end_offsets.close)]
    if refunds is None:
        payment_channel = grpc_client.channel(
            settings.peer("payment"), services=["petpro.payment.v1.PaymentService"]
        )
        refunds = PaymentRefunds(payment_pb2_grpc.PaymentServiceStub(payment_channel))
        on_stop.append(payment_channel.close)
    read = read or uow  # read-only use cases need no transaction: the reader's autocommit connection
    catalog = CatalogHandlers(read, cache_entries=settings.catalog_cache_entries)
    reservations = ReservationHandlers(
        uow,
        read,
        catalog,
        encode_booking_created,
        hold_ttl=timedelta(seconds=settings.hold_ttl_seconds),
        traceparent=telemetry.current_traceparent,
        changes=changes,
        statements=statements,
    )
    lifecycle = LifecycleHandlers(uow, read, encode_booking_change, traceparent=telemetry.current_traceparent)
    owners = OwnerHandlers(uow, read, lifecycle)
    if erasing:
        background.append(
            account_deleted_subscriber(
                "booking_svc.account_deleted",
                settings.url("kafka_bootstrap_servers"),
                mesh.BOOKING_ACCOUNT_CONSUMER,
                owners.erase,
            ).run
        )
    refund_handlers = RefundHandlers(
        uow, read, refunds, retry_max=timedelta(seconds=settings.refund_retry_max_seconds)
    )
    # ClinicAdminService authenticates its callers with AuthService (the one authority on tokens)
    auth_channel = grpc_client.channel(settings.peer("auth"), services=["petpro.auth.v1.AuthService"])
    authn = Authenticator(auth_pb2_grpc.AuthServiceStub(auth_channel))
    admin = ClinicAdminServicer(ClinicAdminHandlers(uow, read), authn)
    # ReserveSlot's early refusals: one read-only statement instead of the hold for a slot just refused
    # (with the fakes of the unit tests, none: tests/unit/test_booking_refusals.py tests it on its own)
    taken: TakenSlots | None = None
    if db is not None:
        recheck = SqlRecheck(settings.url("database_url"))
        on_stop.insert(0, recheck.close)
        taken = TakenSlots(recheck)

    async def expire_due() -> None:
        if await reservations.expire_due() and taken is not None:
            taken.forget()  # lapsed holds released: their slots may be free

    on_stop.insert(0, auth_channel.close)
    return grpc_server.App(
        name="booking_svc",
        settings=settings,
        services=[
            grpc_server.Registration(
                booking_pb2_grpc.add_BookingServiceServicer_to_server,
                BookingServicer(
                    catalog,
                    PetHandlers(uow, read),
                    reservations,
                    lifecycle,
                    refund_handlers,
                    owners=owners,
                    taken=taken,
                ),
                "petpro.booking.v1.BookingService",
            ),
            grpc_server.Registration(
                clinic_admin_pb2_grpc.add_ClinicAdminServiceServicer_to_server,
                admin,
                # authenticated by the kit before the body is decoded (no token → 401, whatever the body)
                "petpro.booking.v1.ClinicAdminService",
                authenticator=authn,
            ),
        ],
        background=[
            grpc_server.periodic("booking_svc.hold_expiry", settings.expiry_sweep_seconds, expire_due),
            grpc_server.periodic(
                "booking_svc.refunds", settings.refund_sweep_seconds, refund_handlers.dispatch
            ),
            *background,
        ],
        on_shutdown=on_shutdown,
        on_stop=on_stop,
    )


def main() -> None:
    grpc_server.main(build, load(BookingSettings))
