"""A Stripe-compatible sandbox for the dev stack and the tests: the payment service talks to it with the
official ``stripe`` SDK (``base_addresses={"api": url}``), exactly as it talks to Stripe.

Implemented (Stripe API v1 shapes, form-encoded parameters, Bearer ``sk_test_…`` keys, ``Idempotency-Key``):

* ``POST /v1/checkout/sessions`` (mode=payment, line_items with price_data), ``GET …/{id}``,
  ``GET …/{id}/line_items``, ``POST …/{id}/expire``, ``GET /v1/checkout/sessions`` (list)
* ``GET /v1/payment_intents/{id}``, ``GET /v1/charges/{id}``, ``POST /v1/refunds``, ``GET /v1/refunds/{id}``
* ``GET /v1/events/{id}``, ``GET /v1/events``
* the hosted pay page at the session's ``url`` (``GET``/``POST /pay/{id}``)
* webhooks signed like Stripe's (``Stripe-Signature: t=…,v1=…``), delivered in the background, in order
  per session, retried with exponential backoff
* test controls: ``GET /_sandbox/events?session=cs_…``, ``POST /_sandbox/events/{id}/resend``,
  ``POST /_sandbox/sessions/{id}/pay``, ``POST /_sandbox/sessions/{id}/webhooks {"enabled": false}``
  (that session's webhooks are lost: recorded as ``muted``, never delivered), ``GET /_sandbox/health``
  (also ``/healthz``)

Run it with ``python -m petpro_dev.stripe_sandbox --port P --home DIR --webhook-url URL``; embed it
with :func:`running_sandbox`.  The payment service finds the signing secret with :func:`load_webhook_secret`.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from petpro_dev.stripe_sandbox.app import RunningSandbox, Runtime, create_app, running_sandbox, serve
    from petpro_dev.stripe_sandbox.config import API_VERSION, RetryPolicy, SandboxConfig
    from petpro_dev.stripe_sandbox.engine import DECLINE_CARD, DEFAULT_CARD
    from petpro_dev.stripe_sandbox.signing import (
        SECRET_ENV,
        load_webhook_secret,
        signature_header,
        webhook_secret_path,
    )

# imported on first use: the dev stack reads the signing secret (``.signing``) for every process it
# starts, the ``petpro migrate`` step too, and the app (FastAPI, uvicorn: ~0.5 s of CPU) is not needed
# for that
_MODULE_OF = {
    "RunningSandbox": "app",
    "Runtime": "app",
    "create_app": "app",
    "running_sandbox": "app",
    "serve": "app",
    "API_VERSION": "config",
    "RetryPolicy": "config",
    "SandboxConfig": "config",
    "DECLINE_CARD": "engine",
    "DEFAULT_CARD": "engine",
    "SECRET_ENV": "signing",
    "load_webhook_secret": "signing",
    "signature_header": "signing",
    "webhook_secret_path": "signing",
}


def __getattr__(name: str) -> Any:
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)


__all__ = [
    "API_VERSION",
    "DECLINE_CARD",
    "DEFAULT_CARD",
    "SECRET_ENV",
    "RetryPolicy",
    "RunningSandbox",
    "Runtime",
    "SandboxConfig",
    "create_app",
    "load_webhook_secret",
    "running_sandbox",
    "serve",
    "signature_header",
    "webhook_secret_path",
]
