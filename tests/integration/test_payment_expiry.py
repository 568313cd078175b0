"""When a hold lapses before payment, payment_svc expires the checkout session through the SDK."""

from __future__ import annotations

import uuid
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta

import pytest
import stripe

from payment_svc.adapters.repository import PaymentRepository
from payment_svc.adapters.stripe import StripeGateway
from payment_svc.adapters.tables import SCHEMA
from payment_svc.domain import PaymentStatus
from payment_svc.handlers import CreateSession, PaymentHandlers
from payment_svc.server import SANDBOX_API_KEY
from petpro.db import Database
from petpro_dev.devstack import Stack
from petpro_dev.stripe_sandbox import load_webhook_secret

pytestmark = pytest.mark.integration


async def test_lapsed_hold_expires_its_checkout_session(mesh: Stack):
    env = mesh.env()
    db = Database(env["DATABASE_URL"], SCHEMA, pool_size=2)

    @asynccontextmanager
    async def uow():  # type: ignore[no-untyped-def]
        async with db.unit_of_work() as session:
            yield PaymentRepository(session)

    gateway = StripeGateway(SANDBOX_API_KEY, load_webhook_secret(mesh.ctx.home), env["STRIPE_API_BASE"])
    handlers = PaymentHandlers(uow, gateway, public_base_url="http://example.invalid")
    try:
        lapsed = await handlers.sessions.create(
            CreateSession(
                request_id=f"test-{uuid.uuid4()}",
                order_ref=str(uuid.uuid4()),
                amount_minor=4500,
                currency="EUR",
                customer_email="a@example.com",
                description="Check-up",
                success_url="",
                cancel_url="",
                expires_at=datetime.now(UTC) - timedelta(seconds=1),
            )
        )
        live = await handlers.sessions.create(
            CreateSession(
                request_id=f"test-{uuid.uuid4()}",
                order_ref=str(uuid.uuid4()),
                amount_minor=4500,
                currency="EUR",
                customer_email="a@example.com",
                description="Check-up",
                success_url="",
                cancel_url="",
                expires_at=datetime.now(UTC) + timedelta(minutes=10),
            )
        )
        assert lapsed.session_id and live.session_id

        assert await handlers.sessions.expire_due() >= 1

        client = stripe.StripeClient(SANDBOX_API_KEY, base_addresses={"api": env["STRIPE_API_BASE"]})
        assert (await client.v1.checkout.sessions.retrieve_async(lapsed.session_id)).status == "expired"
        assert (await client.v1.checkout.sessions.retrieve_async(live.session_id)).status == "open"
        assert (await handlers.sessions.get(lapsed.id)).status == PaymentStatus.EXPIRED
        assert (await handlers.sessions.get(live.id)).status == PaymentStatus.PENDING
    finally:
        await db.close()
