"""payment_svc composition root: PaymentSettings, build() wiring the repository and the Stripe gateway
into the handlers and the servicer, main()."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import timedelta

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from payment_svc.adapters.repository import PaymentRepository
from payment_svc.adapters.stripe import StripeGateway
from payment_svc.adapters.tables import SCHEMA
from payment_svc.handlers import PaymentHandlers
from payment_svc.ports import PaymentGateway, UnitOfWork
from payment_svc.service import PaymentServicer
from petpro import grpc_server, mesh
from petpro.db import Database
from petpro.erasure import account_deleted_subscriber
from petpro.settings import ServiceSettings, load
from petpro_api.payment.v1 import payment_pb2_grpc

SANDBOX_API_KEY = "sk_test_petpro_sandbox"


class PaymentSettings(ServiceSettings):
    component = "payment"
    model_config = SettingsConfigDict(env_prefix="PAYMENT_", env_file=".env", extra="ignore")

    public_base_url: str = Field(
        default="", description="where success/cancel pages live; default: the REST edge"
    )
    expiry_sweep_seconds: float = Field(default=5.0, gt=0)
    webhook_tolerance_seconds: int = Field(default=300, ge=1)
    db_pool_size: int = Field(default=10, ge=1, le=100)
    reconcile_seconds: float = Field(default=30.0, gt=0, description="how often open sessions are checked")
    reconcile_grace_seconds: float = Field(
        default=300.0, ge=0, description="an open session with no webhook for this long is asked about"
    )


def make_gateway(settings: PaymentSettings) -> StripeGateway:
    """Real Stripe when ``STRIPE_API_KEY`` is set, else the Stripe-compatible sandbox at
    ``STRIPE_API_BASE``.  Either way the webhook secret comes from ``STRIPE_WEBHOOK_SECRET`` (the dev
    stack sets it to the sandbox's; in Kubernetes it comes from a Secret)."""
    b = settings.backing
    if not b.stripe_webhook_secret:
        raise SystemExit(
            "STRIPE_WEBHOOK_SECRET is required: the whsec_… secret webhooks are signed with "
            "(`petpro up` sets it for the sandbox)"
        )
    if b.stripe_api_key:  # real Stripe (test or live mode)
        return StripeGateway(
            b.stripe_api_key,
            b.stripe_webhook_secret,
            b.stripe_api_base,
            tolerance_seconds=settings.webhook_tolerance_seconds,
        )
    return StripeGateway(
        SANDBOX_API_KEY,
        b.stripe_webhook_secret,
        settings.url("stripe_api_base"),
        tolerance_seconds=settings.webhook_tolerance_seconds,
    )


def build(
    settings: PaymentSettings,
    *,
    uow: UnitOfWork | None = None,
    read: UnitOfWork | None = None,
    gateway: PaymentGateway | None = None,
) -> grpc_server.App:
    """The payment service.  Tests pass fakes of the ports (``uow``/``read``, ``gateway``)."""
    on_stop: list[Callable[[], Awaitable[None]]] = []
    statements: UnitOfWork | None = None
    background: list[Callable[[], Awaitable[None]]] = []
    erasing = uow is None  # account.deleted is consumed with the database (not with test fakes)
    if uow is None:
        db = Database(
            settings.url("database_url"), SCHEMA, app_name="payment_svc", pool_size=settings.db_pool_size
        )
        uow, read = db.repositories(PaymentRepository)
        # a booking's statements (its session, its webhook, its settle) are plain SQL: psycopg's own
        # autocommit connections, without SQLAlchemy's checkout, isolation level and greenlet per step
        statements = db.statement_repositories(PaymentRepository)
        on_stop.append(db.close)
    public = settings.public_base_url or f"http://{settings.stack.addr('envoy')}"
    if gateway is None:
        stripe_gateway = make_gateway(settings)
        on_stop.append(stripe_gateway.close)
        gateway = stripe_gateway
    handlers = PaymentHandlers(uow, gateway, public_base_url=public, read=read, statements=statements)
    grace = timedelta(seconds=settings.reconcile_grace_seconds)
    if erasing:
        background.append(
            account_deleted_subscriber(
                "payment_svc.account_deleted",
                settings.url("kafka_bootstrap_servers"),
                mesh.PAYMENT_ACCOUNT_CONSUMER,
                handlers.customers.erase,
            ).run
        )

    return grpc_server.App(
        name="payment_svc",
        settings=settings,
        services=[
            grpc_server.Registration(
                payment_pb2_grpc.add_PaymentServiceServicer_to_server,
                PaymentServicer(handlers),
                "petpro.payment.v1.PaymentService",
            )
        ],
        background=[
            grpc_server.periodic(
                "payment_svc.session_expiry", settings.expiry_sweep_seconds, handlers.sessions.expire_due
            ),
            grpc_server.periodic(
                "payment_svc.reconcile",
                settings.reconcile_seconds,
                lambda: handlers.reconciliation.reconcile_pending(grace),
            ),
            *background,
        ],
        on_stop=on_stop,
    )


def main() -> None:
    grpc_server.main(build, load(PaymentSettings))
