"""payment's gateway contract against the Stripe adapter (the official SDK) on the Stripe-compatible
sandbox, served in the test's event loop (no webhook receiver: the events are read from the sandbox)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from payment_svc.adapters.stripe import StripeGateway
from payment_svc.ports import PaymentGateway
from petpro_dev.stripe_sandbox import RunningSandbox, SandboxConfig, running_sandbox, signature_header
from tests.contracts.payment_gateway import PaymentGatewayContract

pytestmark = [
    pytest.mark.integration,
]

API_KEY = "sk_test_sandbox"
SECRET = "whsec_" + "ab" * 32


@pytest.fixture
async def sandbox(tmp_path: Path) -> AsyncIterator[RunningSandbox]:
    async with running_sandbox(SandboxConfig(port=0, home=tmp_path, webhook_secret=SECRET)) as sb:
        yield sb


class TestStripeGateway(PaymentGatewayContract):
    @pytest.fixture
    async def gateway(self, sandbox: RunningSandbox) -> AsyncIterator[PaymentGateway]:
        self.sandbox = sandbox
        gateway = StripeGateway(API_KEY, SECRET, sandbox.url)
        yield gateway
        await gateway.close()

    async def pay(self, gateway: PaymentGateway, session_id: str) -> None:
        async with httpx.AsyncClient() as http:
            resp = await http.post(f"{self.sandbox.url}/_sandbox/sessions/{session_id}/pay", json={})
        resp.raise_for_status()

    async def completed_event(self, gateway: PaymentGateway, session_id: str) -> bytes:
        async with httpx.AsyncClient() as http:
            resp = await http.get(
                f"{self.sandbox.url}/_sandbox/events",
                params={"session": session_id, "type": "checkout.session.completed"},
            )
        resp.raise_for_status()
        [found] = resp.json()["data"]
        return json.dumps(found["event"]).encode()

    def sign(self, gateway: PaymentGateway, payload: bytes, timestamp: int) -> str:
        return signature_header(payload, SECRET, timestamp)
