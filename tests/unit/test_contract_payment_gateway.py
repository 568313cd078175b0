"""payment's gateway contract against the fake provider (tests/unit/fakes/payment.py FakeGateway)."""

from __future__ import annotations

import uuid

import pytest

from payment_svc.domain import PaymentStatus
from payment_svc.ports import PaymentGateway
from tests.contracts.payment_gateway import PaymentGatewayContract
from tests.unit.fakes.payment import FakeGateway, event, sign


class TestFakeGateway(PaymentGatewayContract):
    @pytest.fixture
    def gateway(self) -> PaymentGateway:
        return FakeGateway()

    async def pay(self, gateway: PaymentGateway, session_id: str) -> None:
        assert isinstance(gateway, FakeGateway)
        gateway.open.discard(session_id)
        gateway.paid[session_id] = f"pi_{session_id}"

    async def completed_event(self, gateway: PaymentGateway, session_id: str) -> bytes:
        assert isinstance(gateway, FakeGateway)
        _, payment_id = gateway.sessions[session_id]
        return event(
            f"evt_{session_id}",
            "checkout.session.completed",
            status=PaymentStatus.SUCCEEDED,
            session_id=session_id,
            provider_payment_id=gateway.paid[session_id],
            payment_id=uuid.UUID(payment_id),
        )

    def sign(self, gateway: PaymentGateway, payload: bytes, timestamp: int) -> str:
        return sign(payload, timestamp)
