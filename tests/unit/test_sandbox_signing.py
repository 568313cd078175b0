"""The sandbox signs webhooks exactly as Stripe does (its header comes from the stripe SDK)."""

from __future__ import annotations

import hashlib
import hmac

import pytest
import stripe

from petpro_dev.stripe_sandbox.signing import signature_header

SECRET = "whsec_" + "ab" * 32
BODY = '{"id": "evt_1", "type": "checkout.session.completed", "note": "café"}'.encode()


def test_header_is_stripes_scheme() -> None:
    # Stripe's documented scheme, computed independently: HMAC-SHA256("<t>.<body>") keyed by the secret
    expected = hmac.new(SECRET.encode(), b"1700000000." + BODY, hashlib.sha256).hexdigest()
    assert signature_header(BODY, SECRET, 1700000000) == f"t=1700000000,v1={expected}"


def test_header_verifies_with_the_sdk_and_only_for_that_body_and_secret() -> None:
    header = signature_header(BODY, SECRET)  # signed now
    assert stripe.WebhookSignature.verify_header(BODY, header, SECRET, tolerance=300)
    with pytest.raises(stripe.SignatureVerificationError):
        stripe.WebhookSignature.verify_header(BODY + b" ", header, SECRET, tolerance=300)
    with pytest.raises(stripe.SignatureVerificationError):
        stripe.WebhookSignature.verify_header(BODY, header, "whsec_other", tolerance=300)


def test_an_old_timestamp_is_outside_stripes_tolerance() -> None:
    header = signature_header(BODY, SECRET, 1700000000)
    with pytest.raises(stripe.SignatureVerificationError, match="tolerance"):
        stripe.WebhookSignature.verify_header(BODY, header, SECRET, tolerance=300)
