"""The Stripe adapter behind the gateway port: signature check and Stripe event → payment status."""

from __future__ import annotations

import hashlib
import hmac
import json
import time

import pytest

from payment_svc.domain import InvalidSignature, PaymentStatus
from payment_svc.stripe_gateway import StripeGateway, event_status

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
        ("charge.refunded", False, PaymentStatus.REFUNDED),
        ("customer.created", False, None),
    ],
)
def test_event_status(event_type: str, paid: bool, status: PaymentStatus | None) -> None:
    assert event_status(event_type, paid) == status


def _signed(body: dict, secret: str = SECRET) -> tuple[bytes, str]:
    payload = json.dumps(body).encode()
    t = int(time.time())
    sig = hmac.new(secret.encode(), f"{t}.".encode() + payload, hashlib.sha256).hexdigest()
    return payload, f"t={t},v1={sig}"


def _gateway() -> StripeGateway:
    return StripeGateway("sk_test_unit", SECRET, "http://127.0.0.1:9")  # never called over the network


def test_verified_checkout_event_is_reduced_to_what_we_act_on() -> None:
    payload, sig = _signed({
        "id": "evt_1", "object": "event", "type": "checkout.session.completed",
        "data": {"object": {"object": "checkout.session", "id": "cs_1", "payment_status": "paid",
                            "payment_intent": {"id": "pi_1"}, "metadata": {"payment_id": "p-1"}}},
    })
    e = _gateway().verify_event(payload, sig)
    assert (e.id, e.type, e.session_id, e.provider_payment_id, e.payment_id, e.status) == (
        "evt_1", "checkout.session.completed", "cs_1", "pi_1", "p-1", PaymentStatus.SUCCEEDED)


def test_refund_event_names_the_payment_intent() -> None:
    payload, sig = _signed({
        "id": "evt_2", "object": "event", "type": "charge.refunded",
        "data": {"object": {"object": "charge", "id": "ch_1", "payment_intent": "pi_7", "metadata": {}}},
    })
    e = _gateway().verify_event(payload, sig)
    assert (e.session_id, e.provider_payment_id, e.payment_id, e.status) == (None, "pi_7", None,
                                                                             PaymentStatus.REFUNDED)


def test_forged_or_malformed_events_are_invalid_signatures() -> None:
    payload, sig = _signed({"id": "evt_3", "object": "event", "type": "x", "data": {"object": {}}}, "whsec_other")
    with pytest.raises(InvalidSignature):
        _gateway().verify_event(payload, sig)
    with pytest.raises(InvalidSignature):
        _gateway().verify_event(b"not json", _signed({})[1])
