"""The webhook signing secret and Stripe's ``Stripe-Signature`` scheme.

Stripe signs ``"<t>.<raw body>"`` with HMAC-SHA256, keyed with the endpoint secret as a whole
(``whsec_…`` included), and sends ``Stripe-Signature: t=<unix seconds>,v1=<hex digest>``; each delivery
attempt is signed afresh with its own timestamp.  The header comes from the stripe SDK's own
``stripe.WebhookSignature.generate_signature_header``, the counterpart of the
``stripe.Webhook.construct_event`` that verifies it.

The secret: ``STRIPE_WEBHOOK_SECRET`` when set, else generated once under the stack's home at
``keys/stripe-webhook-secret``; the payment service calls :func:`load_webhook_secret` with the same
home to verify what the sandbox signs.
"""

from __future__ import annotations

import time
from pathlib import Path

from petpro.keys import load_or_create_secret
from petpro.settings import BackingSettings

SECRET_ENV = "STRIPE_WEBHOOK_SECRET"
SECRET_PREFIX = "whsec_"


def webhook_secret_path(home: Path) -> Path:
    """Where the sandbox keeps its generated signing secret under a stack home (``PETPRO_HOME``)."""
    return Path(home) / "keys" / "stripe-webhook-secret"


def load_webhook_secret(home: Path, *, env: bool = True) -> str:
    """The signing secret: ``STRIPE_WEBHOOK_SECRET`` (environment or ``.env``) if set and ``env``, else the
    one kept under ``home`` (created on first use).  The generated one is ``whsec_<64 hex>``: pass it as a
    whole to ``stripe.Webhook.construct_event``, as Stripe's own secrets are."""
    if env:
        # read like every other backing setting (environment, then .env), so the sandbox and the payment
        # service agree on it
        explicit = (BackingSettings().stripe_webhook_secret or "").strip()
        if explicit:
            return explicit
    path = webhook_secret_path(home)
    try:
        value = load_or_create_secret(path)
    except FileExistsError:  # another process created it between our check and our create
        value = path.read_text().strip()
    if not value:  # that process has not written it yet
        for _ in range(50):
            time.sleep(0.01)
            value = path.read_text().strip()
            if value:
                break
        else:
            raise SystemExit(f"{path}: empty webhook secret")
    # the helper stores a bare hex secret; the secret Stripe hands out (and signs with) is "whsec_<…>"
    return value if value.startswith(SECRET_PREFIX) else SECRET_PREFIX + value


def signature_header(payload: bytes, secret: str, timestamp: int | None = None) -> str:
    """``t=<timestamp>,v1=<signature>`` for one delivery attempt (now, unless ``timestamp``)."""
    import stripe  # here: the dev stack reads the secret for every process it starts (the SDK: ~0.25 s)

    return stripe.WebhookSignature.generate_signature_header(payload.decode("utf-8"), secret, timestamp)
