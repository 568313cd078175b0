"""The Stripe adapter: always the official ``stripe`` SDK.

With no ``STRIPE_API_KEY`` the SDK's api base points at the bundled Stripe-compatible sandbox, so the
code path under test is the production one.  Real Stripe test mode: set STRIPE_API_KEY and
STRIPE_WEBHOOK_SECRET (and leave STRIPE_API_BASE unset).
"""

from __future__ import annotations

import json
from datetime import timedelta

import aiohttp
import stripe

from payment_svc.domain import (
    GatewayError,
    GatewayEvent,
    InvalidSignature,
    Payment,
    PaymentStatus,
    RefundInfo,
    Session,
    SessionState,
)

STRIPE_MIN_SESSION_LIFETIME = timedelta(minutes=30)  # Stripe rejects a shorter checkout expires_at

SUCCEEDED_EVENTS = frozenset(
    {"checkout.session.completed", "checkout.session.async_payment_succeeded", "payment_intent.succeeded"}
)
FAILED_EVENTS = frozenset({"payment_intent.payment_failed", "checkout.session.async_payment_failed"})

# The events PetPro's webhook endpoint subscribes to (its ``enabled_events``): what the fulfilment and
# the payments' states need, and nothing else.  A paid Checkout is then ONE delivery
# (checkout.session.completed, which also carries the payment intent's id): payment_intent.succeeded,
# which Stripe would send next to it, is left out.  If it arrives anyway (an endpoint subscribed to
# "*"), it is verified, recorded and acknowledged, and confirms nothing (edge.fulfilment).  The dev
# stack's sandbox subscribes exactly these (petpro_dev.devstack); docs/operations.md registers a real
# endpoint with them.
WEBHOOK_EVENTS = (
    "checkout.session.completed",
    "checkout.session.async_payment_succeeded",
    "checkout.session.async_payment_failed",
    "checkout.session.expired",
    "payment_intent.payment_failed",
    "charge.refunded",
    "refund.created",
    "refund.updated",
    "refund.failed",
)


def event_status(event_type: str, paid: bool, fully_refunded: bool = False) -> PaymentStatus | None:
    """What a Stripe event says about the payment (None: nothing to change).  A completed checkout
    that is not paid yet (delayed methods) changes nothing until its async_payment_* event."""
    if event_type in SUCCEEDED_EVENTS and paid:
        return PaymentStatus.SUCCEEDED
    if event_type == "checkout.session.expired":
        return PaymentStatus.EXPIRED
    if event_type in FAILED_EVENTS:
        return PaymentStatus.FAILED
    if event_type == "charge.refunded" and fully_refunded:  # a partial refund keeps SUCCEEDED
        return PaymentStatus.REFUNDED
    return None


class StripeGateway:
    def __init__(
        self,
        api_key: str,
        webhook_secret: str,
        api_base: str | None = None,
        *,
        tolerance_seconds: int = 300,
        timeout: float = 10.0,
    ) -> None:
        # the SDK's aiohttp client (its session and connections kept for the gateway's life): a
        # checkout session through the SDK's httpx client cost about 2.5 times the CPU (httpx,
        # httpcore and anyio per request: 2.8 to 3.0 against 1.1 to 1.2 ms per create on the
        # sandbox, same SDK calls); retries (max_network_retries) are the SDK's either way
        self.http = stripe.AIOHTTPClient(timeout=aiohttp.ClientTimeout(total=timeout))
        self.client = stripe.StripeClient(
            api_key,
            base_addresses={"api": api_base} if api_base else None,
            http_client=self.http,
            max_network_retries=2,
        )
        self.webhook_secret = webhook_secret
        self.tolerance = tolerance_seconds

    async def close(self) -> None:
        """Close the HTTP session (its pooled connections)."""
        await self.http.close_async()

    async def create_session(
        self, payment: Payment, description: str, success_url: str, cancel_url: str, idempotency_key: str
    ) -> Session:
        # our hold may be shorter than Stripe's minimum: we expire the session ourselves at hold expiry.
        # Derived from the payment alone, never from the clock: a retry under the same idempotency key
        # must send the same parameters, or Stripe answers 400 (seen in the chaos suite)
        created = payment.created_at
        expires = max(
            payment.expires_at or created, created + STRIPE_MIN_SESSION_LIFETIME + timedelta(seconds=30)
        )
        metadata = {"payment_id": str(payment.id), "order_ref": payment.order_ref}
        params = {
            "mode": "payment",
            "line_items": [
                {
                    "price_data": {
                        "currency": payment.currency.lower(),
                        "unit_amount": payment.amount_minor,
                        "product_data": {"name": description},
                    },
                    "quantity": 1,
                }
            ],
            "customer_email": payment.customer_email or None,
            "client_reference_id": payment.order_ref,
            "metadata": metadata,
            "payment_intent_data": {"metadata": metadata},
            "success_url": success_url,
            "cancel_url": cancel_url,
            "expires_at": int(expires.timestamp()),
        }
        try:
            # the SDK's request (authentication, API version, idempotency key, retries, its errors)
            # without its object model: ``checkout.sessions.create_async`` turned the whole session
            # into StripeObjects (half the SDK's CPU per call, 0.95 against 0.54 ms per create on the
            # sandbox) of which we read two fields
            answer = await self.client.raw_request_async(
                "post",
                "/v1/checkout/sessions",
                idempotency_key=idempotency_key,
                **{k: v for k, v in params.items() if v is not None},
            )
        except stripe.StripeError as exc:
            raise GatewayError(f"payment provider refused the session: {exc.user_message or exc}") from exc
        session = answer.data
        return Session(id=session["id"], url=session.get("url") or "")

    async def expire_session(self, session_id: str) -> bool:
        """Expire an open session; False when it is no longer open (paid or already expired)."""
        try:
            await self.client.v1.checkout.sessions.expire_async(session_id)
        except stripe.InvalidRequestError:
            return False
        return True

    async def session_state(self, session_id: str) -> SessionState:
        """Ask the provider (reconciliation: the webhook for this session may never come)."""
        try:
            s = await self.client.v1.checkout.sessions.retrieve_async(session_id)
        except stripe.StripeError as exc:
            raise GatewayError(f"payment provider did not answer: {exc.user_message or exc}") from exc
        intent = s.payment_intent
        intent_id = intent if isinstance(intent, str) or intent is None else intent.id
        return SessionState(
            status=s.status or "", paid=s.payment_status == "paid", provider_payment_id=intent_id
        )

    async def refund(
        self, provider_payment_id: str, amount_minor: int, reason: str, idempotency_key: str
    ) -> RefundInfo:
        try:
            refund = await self.client.v1.refunds.create_async(
                {
                    "payment_intent": provider_payment_id,
                    "amount": amount_minor,
                    "reason": "requested_by_customer",
                    "metadata": {"petpro_reason": reason[:500]},
                },
                options={"idempotency_key": idempotency_key},
            )
        except stripe.StripeError as exc:
            raise GatewayError(f"refund failed: {exc.user_message or exc}") from exc
        return RefundInfo(refund.id, refund.status or "pending", refund.amount)

    async def retrieve_refund(self, refund_id: str) -> RefundInfo:
        try:
            refund = await self.client.v1.refunds.retrieve_async(refund_id)
        except stripe.StripeError as exc:
            raise GatewayError(f"refund lookup failed: {exc.user_message or exc}") from exc
        return RefundInfo(refund.id, refund.status or "pending", refund.amount)

    def verify_event(self, payload: bytes, signature: str) -> GatewayEvent:
        # the SDK's own verification (HMAC-SHA256 of "timestamp.payload", constant-time compare, the
        # tolerance), then the payload read once as plain JSON: ``Webhook.construct_event`` also built
        # a StripeObject tree of the whole event (and a requestor for it) that ``to_dict`` took apart
        # again, ~a third of a webhook's CPU in payment_svc (py-spy, full flow)
        try:
            stripe.WebhookSignature.verify_header(payload, signature, self.webhook_secret, self.tolerance)
            raw = json.loads(payload)
        except stripe.SignatureVerificationError:
            raise InvalidSignature("webhook signature is invalid or too old") from None
        except ValueError:
            raise InvalidSignature("webhook payload is not a Stripe event") from None
        if not isinstance(raw, dict) or not isinstance(raw.get("id"), str) or not raw.get("type"):
            raise InvalidSignature("webhook payload is not a Stripe event")
        event_id, event_type = raw["id"], str(raw["type"])
        data = raw.get("data")
        obj = (data.get("object") if isinstance(data, dict) else None) or {}
        if not isinstance(obj, dict):
            raise InvalidSignature("webhook payload is not a Stripe event")
        kind = obj.get("object", "")
        metadata = obj.get("metadata") or {}
        session_id = obj.get("id") if kind == "checkout.session" else None

        def ref(value: object) -> str | None:  # an id, or an expanded object carrying one
            if isinstance(value, dict):
                value = value.get("id")
            return value if isinstance(value, str) else None

        if kind == "checkout.session":
            provider_id, paid = ref(obj.get("payment_intent")), obj.get("payment_status") == "paid"
        elif kind == "payment_intent":
            provider_id, paid = obj.get("id"), obj.get("status") == "succeeded"
        elif kind in ("charge", "refund"):
            provider_id, paid = ref(obj.get("payment_intent")), False
        else:
            provider_id, paid = None, False
        # a refund's own metadata is ours (petpro_reason), not the payment's: find the payment by its intent
        return GatewayEvent(
            id=event_id,
            type=event_type,
            session_id=session_id,
            provider_payment_id=provider_id,
            payment_id=metadata.get("payment_id") if kind != "refund" else None,
            status=event_status(event_type, paid, kind == "charge" and bool(obj.get("refunded"))),
            raw=raw,
            refund_id=obj.get("id") if kind == "refund" else None,
            refund_status=obj.get("status") if kind == "refund" else None,
        )
