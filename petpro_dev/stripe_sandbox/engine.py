"""What the sandbox does, in Stripe's terms: Checkout Sessions, PaymentIntents, Charges, Refunds, Events.

Plain synchronous code over :class:`~petpro_dev.stripe_sandbox.store.Store`; no HTTP here.  Objects
are built with the fields the Stripe API returns (enough for the SDK to parse them into
``stripe.checkout.Session``, ``stripe.PaymentIntent``, …).  Every state change and the events it causes are
committed together; the events are then handed to ``on_event`` (the webhook dispatcher).
"""

from __future__ import annotations

import json
import re
import secrets
import string
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from petpro_dev.stripe_sandbox.config import SandboxConfig
from petpro_dev.stripe_sandbox.errors import (
    StripeError,
    invalid_param,
    not_supported,
    parameter_missing,
    resource_missing,
)
from petpro_dev.stripe_sandbox.forms import Params
from petpro_dev.stripe_sandbox.store import NO_ENDPOINT, NOT_SUBSCRIBED, PENDING, Obj, Store, StoredEvent

_ALNUM = string.ascii_letters + string.digits

# top-level parameters of POST /v1/checkout/sessions (stripe 16's SessionCreateParams)
SESSION_PARAMS = frozenset(
    "adaptive_pricing after_expiration allow_promotion_codes allowed_payment_method_types automatic_tax "
    "billing_address_collection branding_settings cancel_url client_reference_id consent_collection currency "
    "custom_fields custom_text customer customer_account customer_creation customer_email customer_update "
    "discounts excluded_payment_method_types expand expires_at integration_identifier invoice_creation "
    "line_items locale managed_payments metadata mode name_collection optional_items origin_context "
    "payment_intent_data payment_method_collection payment_method_configuration payment_method_data "
    "payment_method_options permissions phone_number_collection redirect_on_completion return_url "
    "saved_payment_method_options setup_intent_data shipping_address_collection shipping_options submit_type "
    "subscription_data success_url tax_id_collection ui_mode wallet_options".split()
)
# valid Stripe parameters whose behaviour the sandbox does not implement: rejected rather than ignored,
# so code relying on them fails here instead of behaving differently against Stripe
SESSION_UNSUPPORTED = frozenset(
    "customer customer_account customer_update discounts optional_items setup_intent_data shipping_options "
    "subscription_data after_expiration invoice_creation redirect_on_completion return_url "
    "payment_method_configuration managed_payments permissions".split()
)
LINE_ITEM_PARAMS = frozenset(
    {"price", "price_data", "quantity", "adjustable_quantity", "dynamic_tax_rates", "tax_rates", "metadata"}
)
PRICE_DATA_PARAMS = frozenset(
    {"currency", "product", "product_data", "unit_amount", "unit_amount_decimal", "tax_behavior", "recurring"}
)
PRODUCT_DATA_PARAMS = frozenset({"name", "description", "images", "metadata", "tax_code", "unit_label"})
PI_DATA_PARAMS = frozenset(
    "application_fee_amount capture_method description metadata on_behalf_of receipt_email setup_future_usage "
    "shipping statement_descriptor statement_descriptor_suffix transfer_data transfer_group".split()
)
REFUND_PARAMS = frozenset(
    "amount charge currency customer expand instructions_email metadata origin payment_intent reason "
    "refund_application_fee reverse_transfer".split()
)
REFUND_REASONS = ("duplicate", "fraudulent", "requested_by_customer")

ZERO_DECIMAL = frozenset("bif clp djf gnf jpy kmf krw mga pyg rwf ugx vnd vuv xaf xof xpf".split())
MINIMUM_AMOUNT = {
    "usd": 50,
    "eur": 50,
    "chf": 50,
    "cad": 50,
    "aud": 50,
    "nzd": 50,
    "sgd": 50,
    "gbp": 30,
    "jpy": 50,
}

# Stripe's test cards that fail, and how (https://docs.stripe.com/testing#declined-payments)
DECLINES: dict[str, tuple[str, str, str]] = {
    "4000000000000002": ("card_declined", "generic_decline", "Your card was declined."),
    "4000000000009995": ("card_declined", "insufficient_funds", "Your card has insufficient funds."),
    "4000000000009987": ("card_declined", "lost_card", "Your card was declined."),
    "4000000000009979": ("card_declined", "stolen_card", "Your card was declined."),
    "4000000000000069": ("expired_card", "expired_card", "Your card has expired."),
    "4000000000000127": ("incorrect_cvc", "incorrect_cvc", "Your card's security code is incorrect."),
    "4000000000000119": (
        "processing_error",
        "processing_error",
        "An error occurred while processing your card. Try again in a little bit.",
    ),
}
DEFAULT_CARD = "4242424242424242"
DECLINE_CARD = "4000000000000002"


def new_id(prefix: str, length: int = 24) -> str:
    return prefix + "".join(secrets.choice(_ALNUM) for _ in range(length))


def now() -> int:
    return int(time.time())


def format_amount(amount: int, currency: str) -> str:
    if currency.lower() in ZERO_DECIMAL:
        return f"{currency.upper()} {amount:,}"
    return f"{currency.upper()} {amount / 100:,.2f}"


@dataclass(frozen=True)
class RequestContext:
    """Who caused a change: an API request (its id and idempotency key) or the hosted page (no id)."""

    request_id: str | None = None
    idempotency_key: str | None = None


PAGE = RequestContext()


@dataclass(frozen=True)
class Card:
    number: str = DEFAULT_CARD
    exp_month: int = 12
    exp_year: int = 2034
    cvc: str = "123"
    name: str | None = None
    email: str | None = None

    @staticmethod
    def parse(fields: dict[str, Any]) -> Card:
        """From the pay form / JSON: ``card_number``, ``exp`` ("MM / YY") or ``exp_month``/``exp_year``,
        ``cvc``, ``name``, ``email``.  Missing fields take the default test card's values."""

        def text(key: str) -> str:
            value = fields.get(key)
            return str(value).strip() if value is not None else ""

        number = re.sub(r"[\s-]", "", text("card_number") or text("number")) or DEFAULT_CARD
        exp_month, exp_year = 12, 2034
        exp = text("exp")
        if exp:
            m = re.fullmatch(r"(\d{1,2})\s*/\s*(\d{2}|\d{4})", exp)
            if not m:
                raise StripeError(
                    402,
                    "Your card's expiration date is invalid.",
                    type="card_error",
                    code="invalid_expiry_month",
                    param="exp_month",
                )
            exp_month, exp_year = int(m.group(1)), int(m.group(2))
        else:
            if text("exp_month"):
                exp_month = int(text("exp_month")) if text("exp_month").isdigit() else 0
            if text("exp_year"):
                exp_year = int(text("exp_year")) if text("exp_year").isdigit() else 0
        if exp_year < 100:
            exp_year += 2000
        return Card(
            number=number,
            exp_month=exp_month,
            exp_year=exp_year,
            cvc=text("cvc") or "123",
            name=text("name") or None,
            email=text("email") or None,
        )

    @property
    def brand(self) -> str:
        if self.number.startswith("4"):
            return "visa"
        if self.number[:2] in {"51", "52", "53", "54", "55"} or self.number[:1] == "2":
            return "mastercard"
        if self.number[:2] in {"34", "37"}:
            return "amex"
        return "unknown"

    def validate(self) -> None:
        """Checks Stripe.js does before anything reaches the API (no PaymentIntent is attempted)."""
        if not self.number.isdigit() or not 12 <= len(self.number) <= 19 or not luhn_ok(self.number):
            raise StripeError(
                402,
                "Your card number is incorrect.",
                type="card_error",
                code="incorrect_number",
                param="number",
            )
        if not 1 <= self.exp_month <= 12:
            raise StripeError(
                402,
                "Your card's expiration month is invalid.",
                type="card_error",
                code="invalid_expiry_month",
                param="exp_month",
            )
        today = time.gmtime()
        if (self.exp_year, self.exp_month) < (today.tm_year, today.tm_mon):
            raise StripeError(
                402,
                "Your card's expiration year is in the past.",
                type="card_error",
                code="invalid_expiry_year",
                param="exp_year",
            )
        if not self.cvc.isdigit() or not 3 <= len(self.cvc) <= 4:
            raise StripeError(
                402,
                "Your card's security code is invalid.",
                type="card_error",
                code="invalid_cvc",
                param="cvc",
            )


def luhn_ok(number: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(number)):
        d = int(ch)
        if i % 2 == 1:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


@dataclass(frozen=True)
class PayResult:
    session: Obj
    payment_intent: Obj | None
    error: StripeError | None  # a declined card (HTTP 402); the session stays open

    @property
    def paid(self) -> bool:
        return self.error is None


class Sandbox:
    def __init__(
        self, store: Store, config: SandboxConfig, on_event: Callable[[StoredEvent], None] | None = None
    ) -> None:
        self.store = store
        self.config = config
        self.on_event = on_event
        self._emitted: list[StoredEvent] = []
        self._depth = 0
        # refund test controls (/_sandbox/refunds/...): an error mode failing the next N refund
        # creations like a Stripe outage (500 api_error, not replayed under its Idempotency-Key), and
        # the status new refunds start in ("succeeded", or "pending" until settled)
        self.refund_failures = 0
        self.refund_initial_status = "succeeded"
        # the next N refunds are accepted (``pending``) and fail later, as a card refund that the
        # issuer rejects after Stripe took it: ``refund.updated`` + ``refund.failed`` with this reason.
        # ``on_doomed_refund(refund_id)`` is told of each one (the app settles it after a delay)
        self.refund_async_failures = 0
        self.refund_async_failure_reason = "expired_or_canceled_card"
        self.on_doomed_refund: Callable[[str], None] | None = None

    # -- plumbing ------------------------------------------------------------------------------------

    @contextmanager
    def _unit(self) -> Iterator[None]:
        """One transaction; the events it emitted are handed on only once the outermost one committed."""
        self._depth += 1
        try:
            with self.store.transaction():
                yield
        except BaseException:
            if self._depth == 1:
                self._emitted.clear()
            raise
        finally:
            self._depth -= 1
        if self._depth == 0:
            emitted, self._emitted = self._emitted, []
            if self.on_event is not None:
                for event in emitted:
                    self.on_event(event)

    def _emit(self, type_: str, obj: Obj, order_key: str | None, ctx: RequestContext) -> StoredEvent:
        if not self.config.webhook_url:
            delivery = NO_ENDPOINT
        elif not self.config.delivers(type_):
            delivery = NOT_SUBSCRIBED
        else:
            delivery = PENDING
        event = {
            "id": new_id("evt_"),
            "object": "event",
            "api_version": self.config.api_version,
            "created": now(),
            "data": {"object": obj},
            "livemode": False,
            "pending_webhooks": 1 if delivery == PENDING else 0,
            "request": {"id": ctx.request_id, "idempotency_key": ctx.idempotency_key},
            "type": type_,
        }
        body = json.dumps(event, indent=2)
        self.store.add_event(event["id"], type_, order_key, event["created"], body, delivery)
        stored = StoredEvent(event["id"], type_, order_key, event["created"], body, delivery)
        self._emitted.append(stored)
        return stored

    def _get(self, object_id: str, kind: str, param: str = "id") -> Obj:
        obj = self.store.get(object_id, kind)
        if obj is None:
            raise resource_missing(kind, object_id, param)
        return obj

    def expand(self, obj: Obj, paths: list[str]) -> Obj:
        """Replace ids by the objects they name, as ``expand[]=payment_intent.latest_charge`` does."""
        out = dict(obj)
        for path in paths:
            out = self._expand_path(out, path.split("."), path)
        return out

    def _expand_path(self, obj: Obj, parts: list[str], full: str) -> Obj:
        field, rest = parts[0], parts[1:]
        if field == "line_items" and obj.get("object") == "checkout.session":
            return {**obj, "line_items": self.line_items(obj["id"], limit=100)}
        if field not in obj:
            raise StripeError(400, f"This property cannot be expanded ({full}).", param="expand")
        value = obj[field]
        if isinstance(value, str):
            target = self.store.get(value)
            if target is None:
                raise StripeError(400, f"This property cannot be expanded ({full}).", param="expand")
            value = target
        elif value is not None and not isinstance(value, dict):
            raise StripeError(400, f"This property cannot be expanded ({full}).", param="expand")
        if rest and isinstance(value, dict):
            value = self._expand_path(value, rest, full)
        return {**obj, field: value}

    # -- Checkout Sessions ---------------------------------------------------------------------------

    def create_session(self, p: Params, ctx: RequestContext) -> Obj:
        p.check_known(SESSION_PARAMS)
        mode = p.text("mode", required=True, choices=("payment", "setup", "subscription"))
        if mode != "payment":
            raise not_supported("mode", f"mode={mode} (only payment)")
        ui_mode = p.text("ui_mode") or "hosted"
        if ui_mode != "hosted":
            raise not_supported("ui_mode", f"ui_mode={ui_mode} (only hosted)")
        for key in sorted(SESSION_UNSUPPORTED):
            if p.has(key):
                raise not_supported(key, f"`{key}`")
        auto_tax = p.sub("automatic_tax")
        if auto_tax is not None and auto_tax.boolean("enabled"):
            raise not_supported("automatic_tax[enabled]", "automatic tax")
        for pm_type in p.strings("payment_method_types"):
            if pm_type != "card":
                raise not_supported("payment_method_types", f"payment method type {pm_type!r} (only card)")

        created = now()
        items = p.items("line_items")
        if not items:
            raise parameter_missing("line_items")
        line_items: list[Obj] = []
        currency: str | None = None
        for item in items:
            line = self._line_item(item, created)
            if currency is not None and line["currency"] != currency:
                raise invalid_param(
                    item.path("price_data") + "[currency]",
                    "All line items must have the same currency.",
                    code="parameter_invalid_string",
                )
            currency = line["currency"]
            line_items.append(line)
        assert currency is not None
        top_currency = p.text("currency")
        if top_currency is not None and top_currency.lower() != currency:
            raise invalid_param(
                "currency", "`currency` must match the line items' currency.", code="parameter_invalid_string"
            )
        amount = sum(li["amount_total"] for li in line_items)
        minimum = MINIMUM_AMOUNT.get(currency, 1)
        if amount < minimum:
            raise StripeError(
                400,
                f"The Checkout Session's total amount due must add up to at least {format_amount(minimum, currency)}",
                param="line_items",
                code="amount_too_small",
            )

        email = p.text("customer_email")
        if email is not None and not re.fullmatch(r"[^@\s]+@[^@\s]+\.[^@\s]+", email):
            raise invalid_param("customer_email", f"Invalid email address: {email}", code="email_invalid")
        client_reference_id = p.text("client_reference_id")
        if client_reference_id is not None and len(client_reference_id) > 200:
            raise invalid_param(
                "client_reference_id",
                "client_reference_id must be at most 200 characters",
                code="parameter_invalid_string",
            )
        urls = {}
        for key in ("success_url", "cancel_url"):
            url = p.text(key)
            if url is not None and not re.match(r"^https?://[^\s/]+", url):
                raise invalid_param(key, f"Not a valid URL: {url}", code="url_invalid")
            urls[key] = url
        expires_at = p.integer("expires_at")
        if expires_at is None:
            expires_at = created + self.config.max_expires_in
        elif expires_at < created + self.config.min_expires_in:
            minutes = self.config.min_expires_in / 60
            raise invalid_param(
                "expires_at",
                f"The `expires_at` timestamp must be at least {minutes:g} minutes from Checkout Session creation.",
                code="parameter_invalid_integer",
            )
        elif expires_at > created + self.config.max_expires_in:
            hours = self.config.max_expires_in / 3600
            raise invalid_param(
                "expires_at",
                f"The `expires_at` timestamp must be less than {hours:g} hours from Checkout Session creation.",
                code="parameter_invalid_integer",
            )
        metadata = p.metadata()
        pi_data: Obj = {}
        pid = p.sub("payment_intent_data")
        if pid is not None:
            pid.check_known(PI_DATA_PARAMS)
            capture = pid.text("capture_method")
            if capture not in (None, "automatic", "automatic_async"):
                raise not_supported("payment_intent_data[capture_method]", f"capture_method={capture}")
            for key in ("application_fee_amount", "on_behalf_of", "transfer_data", "setup_future_usage"):
                if pid.has(key):
                    raise not_supported(pid.path(key), f"`{pid.path(key)}`")
            pi_data = {
                "metadata": pid.metadata(),
                "description": pid.text("description"),
                "receipt_email": pid.text("receipt_email"),
                "statement_descriptor": pid.text("statement_descriptor"),
                "transfer_group": pid.text("transfer_group"),
            }
        expand = p.strings("expand")

        session_id = new_id("cs_test_", 58)
        session: Obj = {
            "id": session_id,
            "object": "checkout.session",
            "adaptive_pricing": None,
            "after_expiration": None,
            "allow_promotion_codes": p.boolean("allow_promotion_codes"),
            "amount_subtotal": amount,
            "amount_total": amount,
            "automatic_tax": {"enabled": False, "liability": None, "provider": None, "status": None},
            "billing_address_collection": p.text("billing_address_collection"),
            "cancel_url": urls["cancel_url"],
            "client_reference_id": client_reference_id,
            "client_secret": None,
            "consent": None,
            "consent_collection": None,
            "created": created,
            "currency": currency,
            "currency_conversion": None,
            "custom_fields": [],
            "custom_text": {
                "after_submit": None,
                "shipping_address": None,
                "submit": None,
                "terms_of_service_acceptance": None,
            },
            "customer": None,
            "customer_creation": p.text("customer_creation") or "if_required",
            "customer_details": None,
            "customer_email": email,
            "discounts": [],
            "expires_at": expires_at,
            "invoice": None,
            "invoice_creation": None,
            "livemode": False,
            "locale": p.text("locale"),
            "metadata": metadata,
            "mode": "payment",
            "payment_intent": None,
            "payment_link": None,
            "payment_method_collection": "if_required",
            "payment_method_configuration_details": None,
            "payment_method_options": {},
            "payment_method_types": ["card"],
            "payment_status": "unpaid",
            "phone_number_collection": {"enabled": False},
            "recovered_from": None,
            "saved_payment_method_options": None,
            "setup_intent": None,
            "shipping_address_collection": None,
            "shipping_cost": None,
            "shipping_options": [],
            "status": "open",
            "submit_type": p.text("submit_type"),
            "subscription": None,
            "success_url": urls["success_url"],
            "total_details": {"amount_discount": 0, "amount_shipping": 0, "amount_tax": 0},
            "ui_mode": "hosted",
            "url": f"{self.config.base_url}/pay/{session_id}",
            "wallet_options": None,
        }
        with self._unit():
            self.store.put(
                session,
                session_id=session_id,
                internal={"line_items": line_items, "payment_intent_data": pi_data},
            )
        return self.expand(session, expand)

    def _line_item(self, item: Params, created: int) -> Obj:
        item.check_known(LINE_ITEM_PARAMS)
        if item.has("price"):
            raise not_supported(item.path("price"), "Price objects (use price_data)")
        for key in ("adjustable_quantity", "dynamic_tax_rates", "tax_rates"):
            if item.has(key):
                raise not_supported(item.path(key), f"`{item.path(key)}`")
        pd = item.sub("price_data", required=True)
        assert pd is not None
        pd.check_known(PRICE_DATA_PARAMS)
        if pd.has("recurring"):
            raise StripeError(
                400,
                "You specified `payment` mode but passed a recurring price. Either switch to "
                "`subscription` mode or use only one-time prices.",
                param=pd.path("recurring"),
            )
        if pd.has("product"):
            raise not_supported(pd.path("product"), "Product objects (use product_data)")
        if pd.has("unit_amount_decimal"):
            raise not_supported(pd.path("unit_amount_decimal"), "unit_amount_decimal (use unit_amount)")
        currency = (pd.text("currency", required=True) or "").lower()
        if not re.fullmatch(r"[a-z]{3}", currency):
            raise invalid_param(
                pd.path("currency"), f"Invalid currency: {currency}", code="parameter_invalid_string"
            )
        unit_amount = pd.integer("unit_amount", required=True, minimum=0)
        assert unit_amount is not None
        product = pd.sub("product_data", required=True)
        assert product is not None
        product.check_known(PRODUCT_DATA_PARAMS)
        name = product.text("name", required=True)
        quantity = item.integer("quantity", required=True, minimum=1)
        assert quantity is not None
        total = unit_amount * quantity
        return {
            "id": new_id("li_"),
            "object": "item",
            "amount_discount": 0,
            "amount_subtotal": total,
            "amount_tax": 0,
            "amount_total": total,
            "currency": currency,
            "description": name,
            "metadata": item.metadata(),
            "price": {
                "id": new_id("price_"),
                "object": "price",
                "active": False,
                "billing_scheme": "per_unit",
                "created": created,
                "currency": currency,
                "custom_unit_amount": None,
                "livemode": False,
                "lookup_key": None,
                "metadata": {},
                "nickname": None,
                "product": new_id("prod_", 14),
                "recurring": None,
                "tax_behavior": pd.text("tax_behavior") or "unspecified",
                "tiers_mode": None,
                "transform_quantity": None,
                "type": "one_time",
                "unit_amount": unit_amount,
                "unit_amount_decimal": str(unit_amount),
            },
            "quantity": quantity,
        }

    def session(self, session_id: str, expand: list[str] | None = None, param: str = "session") -> Obj:
        """A session as it is now (one past its ``expires_at`` is expired first, with its event)."""
        with self._unit():
            session = self._get(session_id, "checkout.session", param)
            if session["status"] == "open" and session["expires_at"] <= now():
                session = self._expire(session, PAGE)
        return self.expand(session, expand or [])

    def list_sessions(self, p: Params) -> Obj:
        p.check_known(
            {
                "limit",
                "starting_after",
                "ending_before",
                "expand",
                "payment_intent",
                "status",
                "customer",
                "created",
                "customer_details",
                "payment_link",
                "subscription",
            }
        )
        where = {k: v for k in ("payment_intent", "status") if (v := p.text(k)) is not None}
        return self._list("checkout.session", "/v1/checkout/sessions", p, where)

    def _list(self, kind: str, url: str, p: Params, where: dict[str, str] | None = None) -> Obj:
        limit = p.integer("limit", minimum=1) or 10
        if limit > 100:
            raise invalid_param(
                "limit", "This value must be less than or equal to 100.", code="parameter_invalid_integer"
            )
        rows, has_more = self.store.list(
            kind,
            limit=limit,
            starting_after=p.text("starting_after"),
            ending_before=p.text("ending_before"),
            where=where,
        )
        expand = [e.removeprefix("data.") for e in p.strings("expand") if e.startswith("data.")]
        return {
            "object": "list",
            "data": [self.expand(r, expand) for r in rows],
            "has_more": has_more,
            "url": url,
        }

    def line_items(self, session_id: str, limit: int = 10) -> Obj:
        self._get(session_id, "checkout.session", "session")
        items = self.store.internal(session_id).get("line_items", [])
        return {
            "object": "list",
            "data": items[:limit],
            "has_more": len(items) > limit,
            "url": f"/v1/checkout/sessions/{session_id}/line_items",
        }

    def expire_session(self, session_id: str, ctx: RequestContext) -> Obj:
        self.session(session_id)  # one past its expires_at is expired (and committed) first
        with self._unit():
            session = self._get(session_id, "checkout.session", "session")
            if session["status"] != "open":
                raise StripeError(
                    400,
                    'Only Checkout Sessions with a status in ["open"] can be expired. '
                    f"This Checkout Session has a status of `{session['status']}`.",
                    replayable=True,
                )
            return self._expire(session, ctx)

    def _expire(self, session: Obj, ctx: RequestContext) -> Obj:
        session = {**session, "status": "expired", "url": None}
        self.store.put(session)
        if session["payment_intent"]:
            pi = self._get(session["payment_intent"], "payment_intent")
            if pi["status"] not in ("succeeded", "canceled"):
                pi = {**pi, "status": "canceled", "canceled_at": now(), "cancellation_reason": "abandoned"}
                self.store.put(pi)
                self._emit("payment_intent.canceled", pi, session["id"], ctx)
        self._emit("checkout.session.expired", session, session["id"], ctx)
        return session

    def expire_due(self) -> int:
        """Expire the open sessions past their ``expires_at`` (Stripe does it within minutes)."""
        due = self.store.open_sessions_due(now())
        for session_id in due:
            self.session(session_id)
        return len(due)

    # -- paying on the hosted page -------------------------------------------------------------------

    def pay(self, session_id: str, card: Card) -> PayResult:
        """What the hosted page's Pay button does.  A declined card → ``PayResult.error`` (402), the
        session stays open and can be paid again; an expired (410) or complete (409) session raises."""
        self.session(session_id)  # one past its expires_at is expired (and committed) first
        with self._unit():
            session = self._get(session_id, "checkout.session", "session")
            if session["status"] == "expired":
                raise StripeError(
                    410,
                    "This Checkout Session has expired; start a new checkout.",
                    code="checkout_session_expired",
                )
            if session["status"] == "complete":
                raise StripeError(
                    409, "This Checkout Session is already complete.", code="checkout_session_complete"
                )
            card.validate()
            internal = self.store.internal(session_id)
            pi_data: Obj = internal.get("payment_intent_data", {})
            email = card.email or session["customer_email"]
            created = now()
            pi = self.store.get(session["payment_intent"]) if session["payment_intent"] else None
            if pi is None:
                pi = self._new_payment_intent(session, pi_data, email, created)
            pm_id = new_id("pm_")
            decline = DECLINES.get(card.number)
            charge = self._charge(pi, card, pm_id, email, created, decline)
            self.store.put(charge, session_id=session_id)
            if decline is not None:
                code, decline_code, message = decline
                error = StripeError(
                    402,
                    message,
                    type="card_error",
                    code=code,
                    decline_code=decline_code,
                    extra={"charge": charge["id"]},
                )
                pi = {
                    **pi,
                    "status": "requires_payment_method",
                    "latest_charge": charge["id"],
                    "last_payment_error": {
                        "charge": charge["id"],
                        "code": code,
                        "decline_code": decline_code,
                        "doc_url": f"https://stripe.com/docs/error-codes/{code.replace('_', '-')}",
                        "message": message,
                        "payment_method": self._payment_method(card, pm_id, email, created),
                        "type": "card_error",
                    },
                    "payment_method": None,
                }
                self.store.put(pi, session_id=session_id)
                session = {**session, "payment_intent": pi["id"]}
                self.store.put(session)
                self._emit("payment_intent.payment_failed", pi, session_id, PAGE)
                return PayResult(session, pi, error)
            pi = {
                **pi,
                "status": "succeeded",
                "amount_received": pi["amount"],
                "latest_charge": charge["id"],
                "last_payment_error": None,
                "payment_method": pm_id,
            }
            self.store.put(pi, session_id=session_id)
            session = {
                **session,
                "status": "complete",
                "payment_status": "paid",
                "payment_intent": pi["id"],
                "url": None,
                "customer_details": {
                    "address": None,
                    "email": email,
                    "name": card.name,
                    "phone": None,
                    "tax_exempt": "none",
                    "tax_ids": [],
                },
            }
            self.store.put(session)
            self._emit("payment_intent.succeeded", pi, session_id, PAGE)
            self._emit("checkout.session.completed", session, session_id, PAGE)
            return PayResult(session, pi, None)

    def _new_payment_intent(self, session: Obj, pi_data: Obj, email: str | None, created: int) -> Obj:
        pi_id = new_id("pi_")
        items = self.store.internal(session["id"]).get("line_items", [])
        description = pi_data.get("description") or ", ".join(
            f"{li['description']} x {li['quantity']}" if li["quantity"] > 1 else li["description"]
            for li in items
        )
        return {
            "id": pi_id,
            "object": "payment_intent",
            "amount": session["amount_total"],
            "amount_capturable": 0,
            "amount_details": {"tip": {}},
            "amount_received": 0,
            "application": None,
            "application_fee_amount": None,
            "automatic_payment_methods": None,
            "canceled_at": None,
            "cancellation_reason": None,
            "capture_method": "automatic_async",
            "client_secret": f"{pi_id}_secret_{new_id('', 25)}",
            "confirmation_method": "automatic",
            "created": created,
            "currency": session["currency"],
            "customer": None,
            "description": description,
            "last_payment_error": None,
            "latest_charge": None,
            "livemode": False,
            # like Stripe: the PaymentIntent carries payment_intent_data[metadata], not the session's metadata
            "metadata": dict(pi_data.get("metadata") or {}),
            "next_action": None,
            "on_behalf_of": None,
            "payment_method": None,
            "payment_method_configuration_details": None,
            "payment_method_options": {
                "card": {
                    "installments": None,
                    "mandate_options": None,
                    "network": None,
                    "request_three_d_secure": "automatic",
                }
            },
            "payment_method_types": ["card"],
            "processing": None,
            "receipt_email": pi_data.get("receipt_email") or None,
            "review": None,
            "setup_future_usage": None,
            "shipping": None,
            "source": None,
            "statement_descriptor": pi_data.get("statement_descriptor"),
            "statement_descriptor_suffix": None,
            "status": "requires_payment_method",
            "transfer_data": None,
            "transfer_group": pi_data.get("transfer_group"),
        }

    @staticmethod
    def _payment_method(card: Card, pm_id: str, email: str | None, created: int) -> Obj:
        return {
            "id": pm_id,
            "object": "payment_method",
            "billing_details": {"address": None, "email": email, "name": card.name, "phone": None},
            "card": {
                "brand": card.brand,
                "country": "US",
                "exp_month": card.exp_month,
                "exp_year": card.exp_year,
                "funding": "credit",
                "last4": card.number[-4:],
            },
            "created": created,
            "customer": None,
            "livemode": False,
            "metadata": {},
            "type": "card",
        }

    @staticmethod
    def _charge(
        pi: Obj, card: Card, pm_id: str, email: str | None, created: int, decline: tuple[str, str, str] | None
    ) -> Obj:
        ok = decline is None
        return {
            "id": new_id("ch_"),
            "object": "charge",
            "amount": pi["amount"],
            "amount_captured": pi["amount"] if ok else 0,
            "amount_refunded": 0,
            "application": None,
            "application_fee": None,
            "application_fee_amount": None,
            "balance_transaction": new_id("txn_") if ok else None,
            "billing_details": {"address": None, "email": email, "name": card.name, "phone": None},
            "calculated_statement_descriptor": "PETPRO SANDBOX",
            "captured": ok,
            "created": created,
            "currency": pi["currency"],
            "customer": None,
            "description": pi["description"],
            "disputed": False,
            "failure_balance_transaction": None,
            "failure_code": decline[0] if decline else None,
            "failure_message": decline[2] if decline else None,
            "fraud_details": {},
            "livemode": False,
            "metadata": dict(pi["metadata"]),
            "on_behalf_of": None,
            "outcome": (
                {
                    "network_status": "approved_by_network",
                    "reason": None,
                    "risk_level": "normal",
                    "seller_message": "Payment complete.",
                    "type": "authorized",
                }
                if ok
                else {
                    "network_status": "declined_by_network",
                    "reason": decline[1] if decline else None,
                    "risk_level": "normal",
                    "seller_message": "The bank did not return any further details with this decline.",
                    "type": "issuer_declined",
                }
            ),
            "paid": ok,
            "payment_intent": pi["id"],
            "payment_method": pm_id,
            "payment_method_details": {
                "card": {
                    "brand": card.brand,
                    "country": "US",
                    "exp_month": card.exp_month,
                    "exp_year": card.exp_year,
                    "funding": "credit",
                    "last4": card.number[-4:],
                    "network": card.brand,
                },
                "type": "card",
            },
            "receipt_email": pi["receipt_email"],
            "receipt_number": None,
            "receipt_url": None,
            "refunded": False,
            "review": None,
            "shipping": None,
            "source_transfer": None,
            "statement_descriptor": pi["statement_descriptor"],
            "statement_descriptor_suffix": None,
            "status": "succeeded" if ok else "failed",
            "transfer_data": None,
            "transfer_group": pi["transfer_group"],
        }

    # -- PaymentIntents, Charges ---------------------------------------------------------------------

    def payment_intent(self, pi_id: str, expand: list[str] | None = None) -> Obj:
        return self.expand(self._get(pi_id, "payment_intent", "intent"), expand or [])

    def charge(self, charge_id: str, expand: list[str] | None = None) -> Obj:
        return self.expand(self._get(charge_id, "charge", "charge"), expand or [])

    # -- Refunds -------------------------------------------------------------------------------------

    def create_refund(self, p: Params, ctx: RequestContext) -> Obj:
        p.check_known(REFUND_PARAMS)
        for key in ("customer", "origin", "instructions_email", "refund_application_fee", "reverse_transfer"):
            if p.has(key):
                raise not_supported(key, f"`{key}`")
        pi_id, charge_id = p.text("payment_intent"), p.text("charge")
        if pi_id is None and charge_id is None:
            raise StripeError(
                400,
                "One of the following params should be provided for this request: payment_intent or charge.",
                param="payment_intent",
                code="parameter_missing",
            )
        if pi_id is not None and charge_id is not None:
            raise StripeError(400, "You cannot specify both `charge` and `payment_intent`.", param="charge")
        amount = p.integer("amount", minimum=1)
        reason = p.text("reason", choices=REFUND_REASONS)
        metadata = p.metadata()
        expand = p.strings("expand")
        if self.refund_failures > 0:
            self.refund_failures -= 1
            raise StripeError(
                500,
                "An unknown error occurred while creating the refund (sandbox error mode).",
                type="api_error",
            )
        doomed = False
        with self._unit():
            if pi_id is not None:
                pi = self._get(pi_id, "payment_intent", "payment_intent")
                if pi["status"] != "succeeded" or not pi["latest_charge"]:
                    raise StripeError(
                        400,
                        f"This PaymentIntent ({pi_id}) does not have a successful charge to refund.",
                        param="payment_intent",
                        code="charge_not_refundable",
                        replayable=True,
                    )
                charge = self._get(pi["latest_charge"], "charge", "charge")
            else:
                assert charge_id is not None
                charge = self._get(charge_id, "charge", "charge")
                if charge["status"] != "succeeded":
                    raise StripeError(
                        400,
                        f"Charge {charge_id} has not succeeded and cannot be refunded.",
                        param="charge",
                        code="charge_not_refundable",
                        replayable=True,
                    )
            currency = p.text("currency")
            if currency is not None and currency.lower() != charge["currency"]:
                raise invalid_param(
                    "currency",
                    "`currency` must match the charge's currency.",
                    code="parameter_invalid_string",
                )
            remaining = charge["amount"] - charge["amount_refunded"]
            if remaining <= 0:
                raise StripeError(
                    400,
                    f"Charge {charge['id']} has already been refunded.",
                    code="charge_already_refunded",
                    replayable=True,
                )
            if amount is None:
                amount = remaining
            elif amount > remaining:
                cur = charge["currency"]
                raise StripeError(
                    400,
                    f"Refund amount ({format_amount(amount, cur)}) is greater than unrefunded amount on charge "
                    f"({format_amount(remaining, cur)})",
                    param="amount",
                    code="amount_too_large",
                    replayable=True,
                )
            session_id = self.store.session_of(charge["id"])
            refund = {
                "id": new_id("re_"),
                "object": "refund",
                "amount": amount,
                "balance_transaction": new_id("txn_"),
                "charge": charge["id"],
                "created": now(),
                "currency": charge["currency"],
                "destination_details": {
                    "card": {
                        "reference_status": "pending",
                        "reference_type": "acquirer_reference_number",
                        "type": "refund",
                    },
                    "type": "card",
                },
                "metadata": metadata,
                "payment_intent": charge["payment_intent"],
                "reason": reason,
                "receipt_number": None,
                "source_transfer_reversal": None,
                "status": self.refund_initial_status,
                "transfer_reversal": None,
            }
            if self.refund_async_failures > 0:  # accepted now, failed by the issuer later
                self.refund_async_failures -= 1
                refund["status"] = "pending"
                doomed = True
            refunded = charge["amount_refunded"] + amount
            charge = {**charge, "amount_refunded": refunded, "refunded": refunded >= charge["amount"]}
            self.store.put(refund, session_id=session_id)
            self.store.put(charge)
            order_key = session_id or charge["payment_intent"]
            self._emit("charge.refunded", charge, order_key, ctx)
            self._emit("refund.created", refund, order_key, ctx)
        if doomed and self.on_doomed_refund is not None:
            self.on_doomed_refund(refund["id"])
        return self.expand(refund, expand)

    def refund(self, refund_id: str, expand: list[str] | None = None) -> Obj:
        return self.expand(self._get(refund_id, "refund", "refund"), expand or [])

    def list_refunds(self, p: Params) -> Obj:
        p.check_known(
            {"charge", "payment_intent", "limit", "starting_after", "ending_before", "expand", "created"}
        )
        if p.has("created"):
            raise not_supported("created", "`created` filters")
        where = {k: v for k in ("charge", "payment_intent") if (v := p.text(k)) is not None}
        return self._list("refund", "/v1/refunds", p, where)

    def settle_refund(
        self, refund_id: str, status: str, ctx: RequestContext, failure_reason: str | None = None
    ) -> Obj:
        """A pending refund's outcome, as the card network reports it to Stripe: ``refund.updated``
        (and ``refund.failed`` with the amount returned to the charge, a ``failure_reason`` and a
        ``failure_balance_transaction`` reversing the refund's, when it failed)."""
        if status not in ("succeeded", "failed", "canceled"):
            raise invalid_param("status", "must be succeeded, failed or canceled")
        with self._unit():
            refund = self._get(refund_id, "refund", "refund")
            if refund["status"] not in ("pending", "requires_action"):
                raise StripeError(
                    400, f"Refund {refund_id} is already {refund['status']}.", code="refund_settled"
                )
            refund = {**refund, "status": status}
            if status != "succeeded":
                if status == "failed":
                    refund["failure_reason"] = failure_reason or "expired_or_canceled_card"
                    refund["failure_balance_transaction"] = new_id("txn_")
                else:
                    refund["failure_reason"] = None
                charge = self._get(refund["charge"], "charge", "charge")
                back = charge["amount_refunded"] - refund["amount"]
                self.store.put({**charge, "amount_refunded": back, "refunded": False})
            session_id = self.store.session_of(refund["charge"])
            self.store.put(refund, session_id=session_id)
            order_key = session_id or refund["payment_intent"]
            self._emit("refund.updated", refund, order_key, ctx)
            if status == "failed":
                self._emit("refund.failed", refund, order_key, ctx)
        return refund

    # -- Events --------------------------------------------------------------------------------------

    def event(self, event_id: str) -> Obj:
        stored = self.store.event(event_id)
        if stored is None:
            raise resource_missing("event", event_id)
        return stored.as_object()

    def list_events(self, p: Params) -> Obj:
        p.check_known(
            {
                "limit",
                "starting_after",
                "ending_before",
                "type",
                "types",
                "created",
                "delivery_success",
                "expand",
            }
        )
        if p.has("ending_before"):
            raise not_supported("ending_before", "ending_before on events (use starting_after)")
        limit = p.integer("limit", minimum=1) or 10
        types = [t for t in [p.text("type"), *p.strings("types")] if t]
        if any("*" in t for t in types):
            raise not_supported("type", "wildcards in `type`")
        rows, has_more = self.store.events(
            types=types or None, limit=min(limit, 100), starting_after=p.text("starting_after")
        )
        return {
            "object": "list",
            "data": [e.as_object() for e in rows],
            "has_more": has_more,
            "url": "/v1/events",
        }
