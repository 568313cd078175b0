"""The Stripe adapter behind the gateway port: signature check and Stripe event → payment status."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from pathlib import Path

import pytest

from payment_svc.adapters.stripe import StripeGateway, event_status
from payment_svc.domain import InvalidSignature, PaymentStatus

SECRET = "whsec_unit_test"


@pytest.mark.parametrize(
    ("event_type", "paid", "status"),
    [
        ("checkout.session.completed", True, PaymentStatus.SUCCEEDED),
        ("checkout.session.completed", False, None),  # delayed payment method: wait for async_payment_*
        ("checkout.session.async_payment_succeeded", True, PaymentStatus.SUCCEEDED),
        ("payment_intent.succeeded", True, PaymentStatus.SUCCEEDED),
        ("checkout.session.expired", False, PaymentStatus.EXPIRED),
        ("payment_intent.payment_failed", False, PaymentStatus.FAILED),
        ("checkout.session.async_payment_failed", False, PaymentStatus.FAILED),
        ("customer.created", False, None),
    ],
)
def test_event_status(event_type: str, paid: bool, status: PaymentStatus | None) -> None:
    assert event_status(event_type, paid) == status


def test_only_a_full_refund_makes_the_payment_refunded() -> None:
    assert event_status("charge.refunded", False, fully_refunded=True) == PaymentStatus.REFUNDED
    assert event_status("charge.refunded", False, fully_refunded=False) is None  # partial: still SUCCEEDED


def _signed(body: dict, secret: str = SECRET) -> tuple[bytes, str]:
    payload = json.dumps(body).encode()
    t = int(time.time())
    sig = hmac.new(secret.encode(), f"{t}.".encode() + payload, hashlib.sha256).hexdigest()
    return payload, f"t={t},v1={sig}"


def _gateway() -> StripeGateway:
    return StripeGateway("sk_test_unit", SECRET, "http://127.0.0.1:9")  # never called over the network


def test_verified_checkout_event_is_reduced_to_what_we_act_on() -> None:
    payload, sig = _signed(
        {
            "id": "evt_1",
            "object": "event",
            "type": "checkout.session.completed",
            "data": {
                "object": {
                    "object": "checkout.session",
                    "id": "cs_1",
                    "payment_status": "paid",
                    "payment_intent": {"id": "pi_1"},
                    "metadata": {"payment_id": "p-1"},
                }
            },
        }
    )
    e = _gateway().verify_event(payload, sig)
    assert (e.id, e.type, e.session_id, e.provider_payment_id, e.payment_id, e.status) == (
        "evt_1",
        "checkout.session.completed",
        "cs_1",
        "pi_1",
        "p-1",
        PaymentStatus.SUCCEEDED,
    )


def test_refund_event_names_the_payment_intent() -> None:
    payload, sig = _signed(
        {
            "id": "evt_2",
            "object": "event",
            "type": "charge.refunded",
            "data": {
                "object": {
                    "object": "charge",
                    "id": "ch_1",
                    "payment_intent": "pi_7",
                    "metadata": {},
                    "amount": 4500,
                    "amount_refunded": 4500,
                    "refunded": True,
                }
            },
        }
    )
    e = _gateway().verify_event(payload, sig)
    assert (e.session_id, e.provider_payment_id, e.payment_id, e.status) == (
        None,
        "pi_7",
        None,
        PaymentStatus.REFUNDED,
    )


def test_refund_object_events_carry_the_refund_and_its_status() -> None:
    payload, sig = _signed(
        {
            "id": "evt_4",
            "object": "event",
            "type": "refund.updated",
            "data": {
                "object": {
                    "object": "refund",
                    "id": "re_1",
                    "payment_intent": "pi_7",
                    "status": "failed",
                    "metadata": {"petpro_reason": "booking cancelled"},
                }
            },
        }
    )
    e = _gateway().verify_event(payload, sig)
    assert (e.provider_payment_id, e.payment_id, e.status, e.refund_id, e.refund_status) == (
        "pi_7",
        None,
        None,
        "re_1",
        "failed",
    )


def test_forged_or_malformed_events_are_invalid_signatures() -> None:
    payload, sig = _signed(
        {"id": "evt_3", "object": "event", "type": "x", "data": {"object": {}}}, "whsec_other"
    )
    with pytest.raises(InvalidSignature):
        _gateway().verify_event(payload, sig)
    with pytest.raises(InvalidSignature):
        _gateway().verify_event(b"not json", _signed({})[1])


async def test_a_retried_create_payment_session_sends_the_same_parameters_under_its_key(monkeypatch) -> None:
    """CreatePaymentSession whose first answer from Stripe was lost, retried ten minutes later: the
    retry sends exactly the first request's parameters under the same idempotency key (expires_at
    derives from the payment's created_at, not from the clock), so Stripe answers the first session
    instead of a 400 idempotency_error.  The bundled sandbox (in memory, in this process) is Stripe."""
    from datetime import UTC, datetime, timedelta

    from payment_svc.adapters import stripe as stripe_adapter
    from payment_svc.domain import GatewayError
    from payment_svc.handlers import CreateSession, PaymentHandlers
    from petpro_dev.stripe_sandbox import SandboxConfig, running_sandbox
    from tests.unit.fakes.payment import PaymentStore, payment_uow

    sent: list[tuple[str, dict]] = []  # (idempotency key, parameters) of every create call

    class FirstAnswerLost(StripeGateway):
        async def create_session(self, payment, description, success_url, cancel_url, idempotency_key):  # type: ignore[no-untyped-def]
            session = await super().create_session(
                payment, description, success_url, cancel_url, idempotency_key
            )
            if len(sent) == 1:
                raise GatewayError("the connection dropped before Stripe's answer arrived")
            return session

    later = timedelta(0)

    class WallClock(datetime):  # the clock as an implementation reading it would see it: moved on
        @classmethod
        def now(cls, tz=None):  # type: ignore[no-untyped-def]
            return datetime.now(tz) + later

    monkeypatch.setattr(stripe_adapter, "datetime", WallClock, raising=False)
    start = datetime.now(UTC).replace(microsecond=0)
    clock_at = [start]
    config = SandboxConfig(port=0, webhook_url=None, webhook_secret=SECRET)
    async with running_sandbox(config) as sandbox:
        gateway = FirstAnswerLost("sk_test_unit", SECRET, sandbox.url)
        original = gateway.client.raw_request_async

        async def record(method, url, **params):  # type: ignore[no-untyped-def]
            if url == "/v1/checkout/sessions" and method == "post":
                sent.append(
                    (params["idempotency_key"], {k: v for k, v in params.items() if k != "idempotency_key"})
                )
            return await original(method, url, **params)

        monkeypatch.setattr(gateway.client, "raw_request_async", record)
        h = PaymentHandlers(
            payment_uow(store := PaymentStore()),
            gateway,
            public_base_url="https://edge.test",
            clock=lambda: clock_at[0],
            read=payment_uow(store),
        )
        cmd = CreateSession(
            "req-1",
            "lock-1",
            4500,
            "EUR",
            "o@example.test",
            "Check-up",
            "",
            "",
            start + timedelta(minutes=10),
        )  # the hold: shorter than Stripe's 30 min minimum
        with pytest.raises(GatewayError):
            await h.sessions.create(cmd)
        later = timedelta(minutes=10)
        clock_at[0] = start + later
        p = await h.sessions.create(cmd)  # the client's retry, same request id
        listed = await gateway.client.v1.checkout.sessions.list_async({"limit": 10})
    assert len(sent) == 2 and sent[0] == sent[1], sent
    key, params = sent[0]
    assert key == f"checkout-{p.id}"
    assert params["expires_at"] == int((start + timedelta(minutes=30, seconds=30)).timestamp())
    assert [s.id for s in listed.data] == [p.session_id]  # one session at Stripe, and it is the stored one


def test_the_webhook_endpoint_subscribes_what_petpro_uses_and_one_event_per_paid_checkout(
    tmp_path: Path,
) -> None:
    """WEBHOOK_EVENTS (a real endpoint's enabled_events, docs/operations.md; the dev stack's sandbox
    subscribes the same): every event that moves a payment or a refund, and the fulfilment's, but not
    payment_intent.succeeded, which Stripe sends next to checkout.session.completed (a second delivery
    verified and recorded per payment for nothing)."""
    from edge.fulfilment.use_case import FULFILMENT_EVENTS
    from payment_svc.adapters.stripe import FAILED_EVENTS, SUCCEEDED_EVENTS, WEBHOOK_EVENTS
    from petpro.settings import BackingSettings, StackSettings
    from petpro_dev.devstack.component import Context
    from petpro_dev.devstack.components import _stripe_launch

    moving = (SUCCEEDED_EVENTS | FAILED_EVENTS | {"checkout.session.expired", "charge.refunded"}) - {
        "payment_intent.succeeded"
    }
    refunds = {"refund.created", "refund.updated", "refund.failed"}
    assert set(WEBHOOK_EVENTS) == moving | refunds and FULFILMENT_EVENTS <= set(WEBHOOK_EVENTS)
    argv = list(
        _stripe_launch(Context(StackSettings(home=tmp_path, port_base=18400), BackingSettings())).argv
    )
    assert argv[argv.index("--enabled-events") + 1].split(",") == list(WEBHOOK_EVENTS)
