"""The PaymentGateway port (payment_svc.ports), written once: checkout sessions (idempotent per key),
their expiry and state, refunds (idempotent per key) and signed webhook events.
``tests/unit/test_contract_payment_gateway.py`` runs it against the fake (tests/unit/fakes/payment.py),
``tests/integration/test_contract_payment_gateway.py`` against the Stripe adapter (the official SDK) on
the project's Stripe-compatible sandbox.

What a test needs from the provider beyond the port (a customer paying, the provider's own event for a
paid session, a signature made at some moment) it asks of the runner through the abstract helpers."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from payment_svc.domain import (
    GatewayError,
    InvalidSignature,
    Payment,
    PaymentStatus,
    Session,
)
from payment_svc.ports import PaymentGateway

SUCCESS_URL = "https://petpro.test/paid"
CANCEL_URL = "https://petpro.test/cancelled"


def payment(amount_minor: int = 4500) -> Payment:
    now = datetime.now(UTC).replace(microsecond=0)
    pid = uuid.uuid4()
    return Payment(
        id=pid,
        order_ref=str(uuid.uuid4()),
        request_id=f"req-{pid}",
        status=PaymentStatus.PENDING,
        amount_minor=amount_minor,
        currency="EUR",
        customer_email="owner@example.test",
        session_id=None,
        payment_url=None,
        provider_payment_id=None,
        expires_at=now + timedelta(hours=1),
        created_at=now,
        updated_at=now,
    )


def key() -> str:
    return f"key-{uuid.uuid4()}"


async def session_of(gateway: PaymentGateway, p: Payment, idempotency_key: str | None = None) -> Session:
    return await gateway.create_session(p, "Check-up", SUCCESS_URL, CANCEL_URL, idempotency_key or key())


class PaymentGatewayContract:
    @pytest.fixture
    def gateway(self) -> PaymentGateway:
        """The gateway under test."""
        raise NotImplementedError

    async def pay(self, gateway: PaymentGateway, session_id: str) -> None:
        """The customer pays the session at the provider (the test card that pays)."""
        raise NotImplementedError

    async def completed_event(self, gateway: PaymentGateway, session_id: str) -> bytes:
        """The provider's ``checkout.session.completed`` event of a paid session, as its webhook sends it."""
        raise NotImplementedError

    def sign(self, gateway: PaymentGateway, payload: bytes, timestamp: int) -> str:
        """The signature header the provider sends with ``payload`` at unix time ``timestamp``."""
        raise NotImplementedError

    async def paid_intent(self, gateway: PaymentGateway, amount_minor: int = 4500) -> str:
        """The provider's id of a paid payment of ``amount_minor`` (what refunds name)."""
        s = await session_of(gateway, payment(amount_minor))
        await self.pay(gateway, s.id)
        state = await gateway.session_state(s.id)
        assert state.provider_payment_id is not None
        return state.provider_payment_id

    # -- create_session ---------------------------------------------------------------------------------

    async def test_a_new_session_is_open_unpaid_and_links_to_its_pay_page(
        self, gateway: PaymentGateway
    ) -> None:
        s = await session_of(gateway, payment())
        assert s.id and s.id in s.url
        state = await gateway.session_state(s.id)
        assert (state.status, state.paid, state.provider_payment_id) == ("open", False, None)

    async def test_the_same_idempotency_key_answers_with_the_same_session(
        self, gateway: PaymentGateway
    ) -> None:
        p, k = payment(), key()
        first = await session_of(gateway, p, k)
        assert await session_of(gateway, p, k) == first
        other = await session_of(gateway, p)
        assert other.id != first.id

    async def test_the_same_idempotency_key_for_another_payment_is_refused(
        self, gateway: PaymentGateway
    ) -> None:
        k = key()
        await session_of(gateway, payment(), k)
        with pytest.raises(GatewayError):
            await session_of(gateway, payment(), k)

    # -- session_state, expire_session -----------------------------------------------------------------

    async def test_an_unknown_session_has_no_state(self, gateway: PaymentGateway) -> None:
        with pytest.raises(GatewayError):
            await gateway.session_state(f"cs_test_{uuid.uuid4().hex}")

    async def test_expiring_an_open_session_once(self, gateway: PaymentGateway) -> None:
        s = await session_of(gateway, payment())
        assert await gateway.expire_session(s.id) is True
        state = await gateway.session_state(s.id)
        assert (state.status, state.paid) == ("expired", False)
        assert await gateway.expire_session(s.id) is False  # no longer open

    async def test_an_unknown_session_cannot_be_expired(self, gateway: PaymentGateway) -> None:
        assert await gateway.expire_session(f"cs_test_{uuid.uuid4().hex}") is False

    async def test_a_paid_session_is_complete_and_cannot_be_expired(self, gateway: PaymentGateway) -> None:
        s = await session_of(gateway, payment())
        await self.pay(gateway, s.id)
        state = await gateway.session_state(s.id)
        assert (state.status, state.paid) == ("complete", True) and state.provider_payment_id
        assert await gateway.expire_session(s.id) is False
        assert (await gateway.session_state(s.id)).status == "complete"

    # -- refund, retrieve_refund -----------------------------------------------------------------------

    async def test_a_refund_is_idempotent_per_key_and_can_be_retrieved(self, gateway: PaymentGateway) -> None:
        intent, k = await self.paid_intent(gateway), key()
        first = await gateway.refund(intent, 1000, "slot lost", k)
        assert first.id and first.amount_minor == 1000 and first.status in ("succeeded", "pending")
        assert await gateway.refund(intent, 1000, "slot lost", k) == first
        assert await gateway.retrieve_refund(first.id) == first
        second = await gateway.refund(intent, 500, "slot lost", key())
        assert second.id != first.id and second.amount_minor == 500

    async def test_the_same_refund_key_with_another_amount_is_refused(self, gateway: PaymentGateway) -> None:
        intent, k = await self.paid_intent(gateway), key()
        await gateway.refund(intent, 1000, "slot lost", k)
        with pytest.raises(GatewayError):
            await gateway.refund(intent, 2000, "slot lost", k)

    async def test_an_unknown_refund_cannot_be_retrieved(self, gateway: PaymentGateway) -> None:
        with pytest.raises(GatewayError):
            await gateway.retrieve_refund(f"re_{uuid.uuid4().hex}")

    # -- verify_event ----------------------------------------------------------------------------------

    async def test_a_signed_completion_event_is_reduced_to_what_it_means(
        self, gateway: PaymentGateway
    ) -> None:
        p = payment()
        s = await session_of(gateway, p)
        await self.pay(gateway, s.id)
        intent = (await gateway.session_state(s.id)).provider_payment_id
        body = await self.completed_event(gateway, s.id)

        e = gateway.verify_event(body, self.sign(gateway, body, int(time.time())))
        assert e.id and e.type == "checkout.session.completed"
        assert (e.session_id, e.provider_payment_id, e.payment_id) == (s.id, intent, str(p.id))
        assert e.status == PaymentStatus.SUCCEEDED
        assert (e.refund_id, e.refund_status) == (None, None)

    async def test_a_forged_signature_or_altered_payload_is_refused(self, gateway: PaymentGateway) -> None:
        s = await session_of(gateway, payment())
        await self.pay(gateway, s.id)
        body = await self.completed_event(gateway, s.id)
        signature = self.sign(gateway, body, int(time.time()))
        t, _, _ = signature.partition(",")
        with pytest.raises(InvalidSignature):
            gateway.verify_event(body, f"{t},v1={'0' * 64}")
        with pytest.raises(InvalidSignature):
            gateway.verify_event(body, "forged")
        with pytest.raises(InvalidSignature):
            gateway.verify_event(body.replace(s.id.encode(), b"cs_someone_else"), signature)

    async def test_a_stale_signature_is_refused(self, gateway: PaymentGateway) -> None:
        s = await session_of(gateway, payment())
        await self.pay(gateway, s.id)
        body = await self.completed_event(gateway, s.id)
        with pytest.raises(InvalidSignature):
            gateway.verify_event(body, self.sign(gateway, body, int(time.time()) - 3600))

    async def test_a_payload_that_is_no_event_is_refused(self, gateway: PaymentGateway) -> None:
        body = b"not json"
        with pytest.raises(InvalidSignature):
            gateway.verify_event(body, self.sign(gateway, body, int(time.time())))
