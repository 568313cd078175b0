"""The Stripe-compatible sandbox, driven the way production drives Stripe: the official ``stripe`` SDK for
the API, plain HTTP for the hosted pay page, and a real HTTP receiver for the signed webhooks."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import stripe
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from petpro_dev.stripe_sandbox import (
    API_VERSION,
    DECLINE_CARD,
    RetryPolicy,
    RunningSandbox,
    SandboxConfig,
    load_webhook_secret,
    running_sandbox,
    webhook_secret_path,
)

pytestmark = [
    pytest.mark.integration,
    # the SDK's own httpx client posts `data=<bytes>`, which httpx deprecates
    pytest.mark.filterwarnings("ignore:Use 'content=<...>':DeprecationWarning"),
]

API_KEY = "sk_test_sandbox"
FAST_RETRY = RetryPolicy(base=0.02, cap=0.1, max_attempts=8, timeout=5.0)
WAIT = 10.0  # seconds any awaited condition may take before the test fails


# -- a webhook receiver ------------------------------------------------------------------------------


@dataclass
class Delivery:
    body: bytes
    signature: str
    status: int

    @property
    def event(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.body)
        return data


@dataclass
class Receiver:
    """Records every POST; answers 500 to the first ``fail_first[type]`` deliveries of an event type, and
    holds every answer while ``gate`` is set and not yet open."""

    url: str = ""
    deliveries: list[Delivery] = field(default_factory=list)
    fail_first: dict[str, int] = field(default_factory=dict)
    gate: asyncio.Event | None = None
    changed: asyncio.Condition = field(default_factory=asyncio.Condition)

    async def handle(self, request: Request) -> Response:
        body = await request.body()
        if self.gate is not None:
            await self.gate.wait()
        type_ = json.loads(body).get("type", "")
        status = 200
        if self.fail_first.get(type_, 0) > 0:
            self.fail_first[type_] -= 1
            status = 500
        async with self.changed:
            self.deliveries.append(Delivery(body, request.headers.get("stripe-signature", ""), status))
            self.changed.notify_all()
        return Response("ok" if status == 200 else "boom", status_code=status)

    def accepted(self, type_: str | None = None, session: str | None = None) -> list[Delivery]:
        return [
            d
            for d in self.deliveries
            if d.status == 200
            and (type_ is None or d.event["type"] == type_)
            and (session is None or _session_of(d.event) == session)
        ]

    async def wait_for(self, predicate: Callable[[], bool], what: str) -> None:
        async with self.changed:
            try:
                await asyncio.wait_for(self.changed.wait_for(predicate), WAIT)
            except TimeoutError:
                raise AssertionError(f"timed out waiting for {what}; got {self._summary()}") from None

    async def wait_accepted(self, type_: str, session: str | None = None, count: int = 1) -> list[Delivery]:
        """Wait for ``count`` accepted deliveries of ``type_`` (of one Checkout Session's, for its events)."""
        await self.wait_for(lambda: len(self.accepted(type_, session)) >= count, f"{count} x {type_}")
        return self.accepted(type_, session)

    def _summary(self) -> list[tuple[str, int]]:
        return [(d.event["type"], d.status) for d in self.deliveries]


def _session_of(event: dict[str, Any]) -> str | None:
    obj = event["data"]["object"]
    return str(obj["id"]) if obj["object"] == "checkout.session" else None


class _QuietServer(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:  # leave pytest's signal handlers alone
        yield


@contextlib.asynccontextmanager
async def serve_receiver(receiver: Receiver) -> AsyncIterator[Receiver]:
    app = Starlette(routes=[Route("/webhooks/stripe", receiver.handle, methods=["POST"])])
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)  # TCP: asyncio sets NODELAY
    sock.bind(("127.0.0.1", 0))
    receiver.url = f"http://127.0.0.1:{sock.getsockname()[1]}/webhooks/stripe"
    server = _QuietServer(uvicorn.Config(app, log_config=None, access_log=False, lifespan="off"))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    deadline = time.monotonic() + WAIT
    while not server.started:
        assert not task.done() and time.monotonic() < deadline, "receiver did not start"
        await asyncio.sleep(0.01)
    try:
        yield receiver
    finally:
        if receiver.gate is not None:
            receiver.gate.set()
        server.should_exit = True
        await task
        sock.close()


# -- fixtures ----------------------------------------------------------------------------------------


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    async with serve_receiver(Receiver()) as r:
        yield r


@pytest.fixture
async def sandbox(
    tmp_path: Path, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[RunningSandbox]:
    monkeypatch.delenv("STRIPE_WEBHOOK_SECRET", raising=False)
    config = SandboxConfig(
        port=0, home=tmp_path, webhook_url=receiver.url, retry=FAST_RETRY, sweep_interval=0.05
    )
    async with running_sandbox(config) as sb:
        yield sb


@pytest.fixture
async def client(sandbox: RunningSandbox) -> AsyncIterator[stripe.StripeClient]:
    """The SDK as the payment service builds it, pointed at the sandbox.  No SDK retries, so every
    request the test makes is exactly one HTTP request."""
    sdk = stripe.StripeClient(API_KEY, base_addresses={"api": sandbox.url}, max_network_retries=0)
    yield sdk
    await sdk._requestor._client.close_async()


def session_params(**overrides: Any) -> dict[str, Any]:
    params: dict[str, Any] = {
        "mode": "payment",
        "line_items": [
            {
                "price_data": {
                    "currency": "eur",
                    "unit_amount": 2500,
                    "product_data": {"name": "Grooming (60 min)"},
                },
                "quantity": 1,
            }
        ],
        "customer_email": "owner@example.com",
        "client_reference_id": "lock_123",
        "metadata": {"lock_id": "lock_123"},
        "payment_intent_data": {"metadata": {"lock_id": "lock_123"}},
        "success_url": "https://petpro.test/paid?session_id={CHECKOUT_SESSION_ID}",
        "cancel_url": "https://petpro.test/cancelled",
        "expires_at": int(time.time()) + 3600,
    }
    params.update(overrides)
    return params


async def new_session(client: stripe.StripeClient, **overrides: Any) -> stripe.checkout.Session:
    return await client.v1.checkout.sessions.create_async(session_params(**overrides))


async def pay(url: str, card_number: str = "4242 4242 4242 4242", *, as_json: bool = False) -> httpx.Response:
    """What the pay page's form submits."""
    headers = {"Accept": "application/json"} if as_json else {}
    form = {
        "email": "owner@example.com",
        "card_number": card_number,
        "exp": "12 / 34",
        "cvc": "123",
        "name": "Ann",
    }
    async with httpx.AsyncClient() as http:
        return await http.post(url, data=form, headers=headers)


async def sandbox_events(sandbox: RunningSandbox, session_id: str) -> list[dict[str, Any]]:
    async with httpx.AsyncClient() as http:
        resp = await http.get(f"{sandbox.url}/_sandbox/events", params={"session": session_id})
    resp.raise_for_status()
    data: list[dict[str, Any]] = resp.json()["data"]
    return data


# -- Checkout Sessions through the SDK ---------------------------------------------------------------


async def test_create_and_retrieve_session(client: stripe.StripeClient, sandbox: RunningSandbox) -> None:
    params = session_params()
    session = await client.v1.checkout.sessions.create_async(params, {"idempotency_key": "create-1"})

    assert isinstance(session, stripe.checkout.Session)
    assert session.object == "checkout.session"
    assert session.id.startswith("cs_test_")
    assert session.url == f"{sandbox.url}/pay/{session.id}"
    assert (session.status, session.payment_status, session.mode) == ("open", "unpaid", "payment")
    assert (session.amount_total, session.amount_subtotal, session.currency) == (2500, 2500, "eur")
    assert session.metadata is not None and session.metadata["lock_id"] == "lock_123"
    assert session.client_reference_id == "lock_123"
    assert session.customer_email == "owner@example.com"
    assert session.expires_at == params["expires_at"]
    assert session.payment_intent is None
    assert session.livemode is False
    assert session.created <= int(time.time())

    again = await client.v1.checkout.sessions.retrieve_async(session.id)
    assert again.to_dict() == session.to_dict()

    items = await client.v1.checkout.sessions.line_items.list_async(session.id)
    assert [(li.description, li.quantity, li.amount_total) for li in items.data] == [
        ("Grooming (60 min)", 1, 2500)
    ]


async def test_module_level_api_base_and_sync_calls(
    client: stripe.StripeClient, sandbox: RunningSandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The older global style (``stripe.api_base``) and the synchronous SDK work too (in a thread, since the
    sandbox answers on this test's event loop)."""
    monkeypatch.setattr(stripe, "api_key", API_KEY)
    monkeypatch.setattr(stripe, "api_base", sandbox.url)
    created = await asyncio.to_thread(stripe.checkout.Session.create, **session_params())
    fetched = await asyncio.to_thread(stripe.checkout.Session.retrieve, created.id)
    assert isinstance(fetched, stripe.checkout.Session) and fetched.id == created.id


async def test_idempotency_key_replays_and_rejects_other_params(client: stripe.StripeClient) -> None:
    params = session_params()
    first = await client.v1.checkout.sessions.create_async(params, {"idempotency_key": "book-42"})
    second = await client.v1.checkout.sessions.create_async(params, {"idempotency_key": "book-42"})
    assert second.id == first.id
    assert second.last_response is not None
    assert second.last_response.headers.get("Idempotent-Replayed") == "true"

    with pytest.raises(stripe.IdempotencyError) as info:
        await client.v1.checkout.sessions.create_async(
            session_params(metadata={"lock_id": "another"}), {"idempotency_key": "book-42"}
        )
    assert info.value.http_status == 400
    assert "same parameters" in str(info.value.user_message)

    with pytest.raises(stripe.IdempotencyError):  # the same key on another endpoint
        await client.v1.refunds.create_async({"payment_intent": "pi_x"}, {"idempotency_key": "book-42"})

    other = await client.v1.checkout.sessions.create_async(params, {"idempotency_key": "book-43"})
    assert other.id != first.id

    racing = await asyncio.gather(
        *(client.v1.checkout.sessions.create_async(params, {"idempotency_key": "book-44"}) for _ in range(20))
    )
    assert len({s.id for s in racing}) == 1


async def test_errors_are_stripe_errors(client: stripe.StripeClient, sandbox: RunningSandbox) -> None:
    with pytest.raises(stripe.InvalidRequestError) as missing:
        await client.v1.checkout.sessions.retrieve_async("cs_test_nope")
    assert (missing.value.http_status, missing.value.code) == (404, "resource_missing")
    assert "No such checkout.session" in str(missing.value.user_message)

    with pytest.raises(stripe.InvalidRequestError) as no_items:
        await new_session(client, line_items=None)
    assert (no_items.value.http_status, no_items.value.param) == (400, "line_items")

    with pytest.raises(stripe.InvalidRequestError) as bad_amount:
        bad_items = session_params()["line_items"]
        bad_items[0]["price_data"]["unit_amount"] = "lots"
        await new_session(client, line_items=bad_items)
    assert bad_amount.value.param == "line_items[0][price_data][unit_amount]"

    with pytest.raises(stripe.InvalidRequestError) as unknown:
        await new_session(client, colour="blue")
    assert (unknown.value.code, unknown.value.param) == ("parameter_unknown", "colour")

    with pytest.raises(stripe.InvalidRequestError) as too_soon:  # Stripe wants at least 30 minutes
        await new_session(client, expires_at=int(time.time()) + 60)
    assert too_soon.value.param == "expires_at"

    with pytest.raises(stripe.InvalidRequestError) as no_pi:
        await client.v1.payment_intents.retrieve_async("pi_nope")
    assert no_pi.value.http_status == 404

    with pytest.raises(stripe.InvalidRequestError) as no_event:
        await client.v1.events.retrieve_async("evt_nope")
    assert no_event.value.http_status == 404

    live = stripe.StripeClient("sk_live_nope", base_addresses={"api": sandbox.url}, max_network_retries=0)
    with pytest.raises(stripe.AuthenticationError):
        await live.v1.checkout.sessions.retrieve_async("cs_test_nope")
    await live._requestor._client.close_async()


# -- paying, webhooks --------------------------------------------------------------------------------


async def test_pay_page_delivers_signed_events(
    client: stripe.StripeClient, sandbox: RunningSandbox, receiver: Receiver
) -> None:
    session = await new_session(client)
    assert session.url is not None
    async with httpx.AsyncClient() as http:
        page = await http.get(session.url)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "EUR 25.00" in page.text and "Grooming (60 min)" in page.text
    assert f'action="/pay/{session.id}"' in page.text and "4242 4242 4242 4242" in page.text

    paid = await pay(session.url)
    assert paid.status_code == 200 and "Payment received" in paid.text

    completed = (await receiver.wait_accepted("checkout.session.completed", session.id))[0]
    secret = load_webhook_secret(sandbox.config.home or Path())
    assert secret == sandbox.webhook_secret and secret.startswith("whsec_")
    event = stripe.Webhook.construct_event(completed.body, completed.signature, secret)
    assert isinstance(event, stripe.Event)
    assert event.type == "checkout.session.completed" and event.id.startswith("evt_")
    assert event.api_version == API_VERSION and event.livemode is False
    obj = event.data.object
    assert isinstance(obj, stripe.checkout.Session)
    assert (obj.id, obj.status, obj.payment_status) == (session.id, "complete", "paid")
    assert obj.metadata is not None and obj.metadata["lock_id"] == "lock_123"
    assert isinstance(obj.payment_intent, str) and obj.payment_intent.startswith("pi_")

    with pytest.raises(stripe.SignatureVerificationError):
        stripe.Webhook.construct_event(completed.body, completed.signature, "whsec_forged")
    with pytest.raises(stripe.SignatureVerificationError):
        stripe.Webhook.construct_event(completed.body.replace(b"paid", b"PAID"), completed.signature, secret)

    # payment_intent.succeeded was created first and, being the same session's, delivered first
    types = [d.event["type"] for d in receiver.deliveries]
    assert types.index("payment_intent.succeeded") < types.index("checkout.session.completed")
    pi_event = next(d for d in receiver.deliveries if d.event["type"] == "payment_intent.succeeded")
    stripe.Webhook.construct_event(pi_event.body, pi_event.signature, secret)

    fetched = await client.v1.checkout.sessions.retrieve_async(session.id, {"expand": ["payment_intent"]})
    assert (fetched.status, fetched.payment_status, fetched.url) == ("complete", "paid", None)
    intent = fetched.payment_intent
    assert isinstance(intent, stripe.PaymentIntent)
    assert (intent.id, intent.status, intent.amount_received) == (obj.payment_intent, "succeeded", 2500)
    assert intent.metadata is not None and intent.metadata["lock_id"] == "lock_123"
    same = await client.v1.payment_intents.retrieve_async(intent.id)
    assert same.latest_charge == intent.latest_charge

    stored = await client.v1.events.retrieve_async(event.id)
    assert isinstance(stored, stripe.Event) and stored.type == "checkout.session.completed"
    listed = await client.v1.events.list_async({"type": "checkout.session.completed", "limit": 5})
    assert [e.id for e in listed.data] == [event.id]

    again = await pay(session.url, as_json=True)  # a completed session cannot be paid twice
    assert again.status_code == 409
    await sandbox.drain()
    assert len(receiver.accepted("checkout.session.completed", session.id)) == 1


async def test_delivery_runs_in_the_background(
    client: stripe.StripeClient, sandbox: RunningSandbox, receiver: Receiver
) -> None:
    receiver.gate = asyncio.Event()  # the receiver answers nothing until the gate opens
    session = await new_session(client)
    async with httpx.AsyncClient() as http:
        resp = await http.post(f"{sandbox.url}/_sandbox/sessions/{session.id}/pay", json={})
    assert resp.status_code == 200
    body = resp.json()
    assert body["session"]["payment_status"] == "paid"
    assert body["payment_intent"]["status"] == "succeeded"
    assert body["success_url"] == f"https://petpro.test/paid?session_id={session.id}"
    assert receiver.deliveries == []
    receiver.gate.set()
    await receiver.wait_accepted("checkout.session.completed", session.id)


async def test_non_2xx_is_retried_until_accepted(
    client: stripe.StripeClient, sandbox: RunningSandbox, receiver: Receiver
) -> None:
    receiver.fail_first = {"payment_intent.succeeded": 2, "checkout.session.completed": 1}
    session = await new_session(client)
    assert (await pay(str(session.url), as_json=True)).status_code == 200
    await receiver.wait_accepted("checkout.session.completed", session.id)

    statuses = [(d.event["type"], d.status) for d in receiver.deliveries]
    assert statuses == [
        ("payment_intent.succeeded", 500),
        ("payment_intent.succeeded", 500),
        ("payment_intent.succeeded", 200),
        ("checkout.session.completed", 500),
        ("checkout.session.completed", 200),
    ]
    # every attempt is signed afresh and carries the same event
    ids = {d.event["id"] for d in receiver.deliveries if d.event["type"] == "payment_intent.succeeded"}
    assert len(ids) == 1
    for d in receiver.deliveries:
        stripe.Webhook.construct_event(d.body, d.signature, sandbox.webhook_secret)

    await sandbox.drain()  # the receiver saw the 200 a moment before the sandbox did
    events = await sandbox_events(sandbox, session.id)
    by_type = {e["type"]: e for e in events}
    assert [a["status_code"] for a in by_type["payment_intent.succeeded"]["attempts"]] == [500, 500, 200]
    assert by_type["checkout.session.completed"]["delivery"] == "succeeded"


async def test_unreachable_endpoint_gives_up_after_max_attempts(tmp_path: Path) -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}/webhooks/stripe"
    config = SandboxConfig(
        port=0,
        home=tmp_path / "dead",
        webhook_url=dead,
        retry=RetryPolicy(base=0.01, cap=0.02, max_attempts=3),
    )
    async with running_sandbox(config) as sb:
        sdk = stripe.StripeClient(API_KEY, base_addresses={"api": sb.url}, max_network_retries=0)
        session = await sdk.v1.checkout.sessions.create_async(session_params())
        await sdk._requestor._client.close_async()
        async with httpx.AsyncClient() as http:
            assert (await http.post(f"{sb.url}/_sandbox/sessions/{session.id}/pay")).status_code == 200
        await sb.drain()
        events = await sandbox_events(sb, session.id)
    assert {e["delivery"] for e in events} == {"failed"}
    for e in events:
        assert len(e["attempts"]) == 3
        assert all(a["status_code"] is None and a["error"] for a in e["attempts"])


async def test_resend_delivers_the_same_event_again(
    client: stripe.StripeClient, sandbox: RunningSandbox, receiver: Receiver
) -> None:
    session = await new_session(client)
    assert (await pay(str(session.url), as_json=True)).status_code == 200
    first = (await receiver.wait_accepted("checkout.session.completed", session.id))[0]
    event_id = first.event["id"]

    async with httpx.AsyncClient() as http:
        resp = await http.post(f"{sandbox.url}/_sandbox/events/{event_id}/resend")
        assert resp.status_code == 202
        missing = await http.post(f"{sandbox.url}/_sandbox/events/evt_nope/resend")
        assert missing.status_code == 404

    replays = await receiver.wait_accepted("checkout.session.completed", session.id, count=2)
    assert [d.event["id"] for d in replays] == [event_id, event_id]
    assert replays[1].body == first.body
    replayed = stripe.Webhook.construct_event(replays[1].body, replays[1].signature, sandbox.webhook_secret)
    assert replayed.id == event_id


async def test_declined_card_keeps_the_session_open(
    client: stripe.StripeClient, sandbox: RunningSandbox, receiver: Receiver
) -> None:
    session = await new_session(client)
    declined = await pay(str(session.url), DECLINE_CARD, as_json=True)
    assert declined.status_code == 402
    assert declined.json()["error"]["code"] == "card_declined"
    failed = (await receiver.wait_accepted("payment_intent.payment_failed"))[0]
    assert failed.event["data"]["object"]["last_payment_error"]["decline_code"] == "generic_decline"

    html = await pay(str(session.url), DECLINE_CARD)  # the page shows the form again with the reason
    assert html.status_code == 402 and "Your card was declined." in html.text and "<form" in html.text

    still_open = await client.v1.checkout.sessions.retrieve_async(session.id)
    assert (still_open.status, still_open.payment_status) == ("open", "unpaid")

    assert (await pay(str(session.url), as_json=True)).status_code == 200
    completed = (await receiver.wait_accepted("checkout.session.completed", session.id))[0]
    assert completed.event["data"]["object"]["payment_intent"] == still_open.payment_intent


async def test_expire_then_paying_is_rejected(
    client: stripe.StripeClient, sandbox: RunningSandbox, receiver: Receiver
) -> None:
    session = await new_session(client)
    expired = await client.v1.checkout.sessions.expire_async(session.id)
    assert isinstance(expired, stripe.checkout.Session)
    assert (expired.status, expired.payment_status, expired.url) == ("expired", "unpaid", None)

    with pytest.raises(stripe.InvalidRequestError) as again:
        await client.v1.checkout.sessions.expire_async(session.id)
    assert again.value.http_status == 400 and "status of `expired`" in str(again.value.user_message)

    assert (await pay(str(session.url), as_json=True)).status_code == 410
    async with httpx.AsyncClient() as http:
        assert (await http.get(str(session.url))).status_code == 410

    await receiver.wait_accepted("checkout.session.expired", session.id)
    await sandbox.drain()
    assert [e["type"] for e in await sandbox_events(sandbox, session.id)] == ["checkout.session.expired"]

    paid = await new_session(client)
    assert (await pay(str(paid.url), as_json=True)).status_code == 200
    with pytest.raises(stripe.InvalidRequestError):  # only open sessions expire
        await client.v1.checkout.sessions.expire_async(paid.id)


async def test_sessions_past_expires_at_expire_by_themselves(
    tmp_path: Path, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STRIPE_WEBHOOK_SECRET", "whsec_from_env")
    config = SandboxConfig(
        port=0,
        home=tmp_path,
        webhook_url=receiver.url,
        retry=FAST_RETRY,
        min_expires_in=0,
        sweep_interval=0.05,
    )
    async with running_sandbox(config) as sb:
        assert sb.webhook_secret == "whsec_from_env"
        sdk = stripe.StripeClient(API_KEY, base_addresses={"api": sb.url}, max_network_retries=0)
        session = await sdk.v1.checkout.sessions.create_async(session_params(expires_at=int(time.time()) + 1))
        expired = (await receiver.wait_accepted("checkout.session.expired", session.id))[0]
        stripe.Webhook.construct_event(expired.body, expired.signature, "whsec_from_env")
        fetched = await sdk.v1.checkout.sessions.retrieve_async(session.id)
        assert fetched.status == "expired"
        await sdk._requestor._client.close_async()


# -- refunds -----------------------------------------------------------------------------------------


async def test_refund_once(client: stripe.StripeClient, sandbox: RunningSandbox, receiver: Receiver) -> None:
    session = await new_session(client)
    assert (await pay(str(session.url), as_json=True)).status_code == 200
    paid = await client.v1.checkout.sessions.retrieve_async(session.id)
    assert isinstance(paid.payment_intent, str)

    with pytest.raises(stripe.InvalidRequestError) as too_much:
        await client.v1.refunds.create_async({"payment_intent": paid.payment_intent, "amount": 9999})
    assert (too_much.value.param, too_much.value.code) == ("amount", "amount_too_large")

    refund = await client.v1.refunds.create_async(
        {
            "payment_intent": paid.payment_intent,
            "reason": "requested_by_customer",
            "metadata": {"lock_id": "lock_123"},
        },
        {"idempotency_key": "refund-lock_123"},
    )
    assert isinstance(refund, stripe.Refund)
    assert refund.id.startswith("re_")
    assert (refund.status, refund.amount, refund.currency) == ("succeeded", 2500, "eur")
    assert refund.payment_intent == paid.payment_intent
    assert refund.metadata is not None and refund.metadata["lock_id"] == "lock_123"

    replay = await client.v1.refunds.create_async(
        {
            "payment_intent": paid.payment_intent,
            "reason": "requested_by_customer",
            "metadata": {"lock_id": "lock_123"},
        },
        {"idempotency_key": "refund-lock_123"},
    )
    assert replay.id == refund.id

    with pytest.raises(stripe.InvalidRequestError) as twice:
        await client.v1.refunds.create_async({"payment_intent": paid.payment_intent})
    assert (twice.value.http_status, twice.value.code) == (400, "charge_already_refunded")

    refunded = (await receiver.wait_accepted("charge.refunded"))[0]
    event = stripe.Webhook.construct_event(refunded.body, refunded.signature, sandbox.webhook_secret)
    charge = event.data.object
    assert isinstance(charge, stripe.Charge)
    assert (charge.refunded, charge.amount_refunded, charge.payment_intent) == (
        True,
        2500,
        paid.payment_intent,
    )
    await receiver.wait_accepted("refund.created")
    fetched = await client.v1.refunds.retrieve_async(refund.id)
    assert fetched.status == "succeeded"

    unpaid = await new_session(client)
    with pytest.raises(stripe.InvalidRequestError):
        await client.v1.refunds.create_async({"payment_intent": "pi_nope"})
    assert unpaid.payment_intent is None


async def test_a_refund_accepted_then_failed_by_the_issuer(
    client: stripe.StripeClient, sandbox: RunningSandbox, receiver: Receiver
) -> None:
    """``/_sandbox/refunds/async-failures``: the refund is accepted (pending), then fails as Stripe
    reports it (refund.updated with status failed, refund.failed, failure_reason, the amount back on
    the charge), so a new refund under a new key can succeed."""
    session = await new_session(client)
    assert (await pay(str(session.url), as_json=True)).status_code == 200
    pi = str((await client.v1.checkout.sessions.retrieve_async(session.id)).payment_intent)
    async with httpx.AsyncClient(
        base_url=sandbox.url, headers={"Authorization": f"Bearer {API_KEY}"}
    ) as http:
        bad = await http.post("/_sandbox/refunds/async-failures", json={"count": 1, "failure_reason": "nope"})
        assert bad.status_code == 400, bad.text
        ok = await http.post(
            "/_sandbox/refunds/async-failures",
            json={"count": 1, "after_seconds": 0.05, "failure_reason": "lost_or_stolen_card"},
        )
        assert ok.status_code == 200, ok.text

    first = await client.v1.refunds.create_async({"payment_intent": pi}, {"idempotency_key": "refund-b1-0"})
    assert (first.status, first.amount) == ("pending", 2500)
    failed = (await receiver.wait_accepted("refund.failed"))[0]
    event = stripe.Webhook.construct_event(failed.body, failed.signature, sandbox.webhook_secret)
    assert (event.data.object.id, event.data.object.status, event.data.object.failure_reason) == (
        first.id,
        "failed",
        "lost_or_stolen_card",
    )
    assert event.data.object.failure_balance_transaction.startswith("txn_")
    updated = [
        stripe.Webhook.construct_event(d.body, d.signature, sandbox.webhook_secret).data.object
        for d in await receiver.wait_accepted("refund.updated")
    ]
    assert [(r.id, r.status) for r in updated] == [(first.id, "failed")]
    assert (await client.v1.refunds.retrieve_async(first.id)).status == "failed"
    charge = await client.v1.charges.retrieve_async(str(first.charge))
    assert (charge.amount_refunded, charge.refunded) == (0, False)

    again = await client.v1.refunds.create_async({"payment_intent": pi}, {"idempotency_key": "refund-b1-1"})
    assert (again.status, again.amount) == ("succeeded", 2500)  # only the next one was doomed
    listed = await client.v1.refunds.list_async({"payment_intent": pi})
    assert sorted(r.status for r in listed.data) == ["failed", "succeeded"]


# -- the process: CLI, persistence, the signing secret ---------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_cli(home: Path, port: int) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if k != "STRIPE_WEBHOOK_SECRET"}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "petpro_dev.stripe_sandbox",
            "--port",
            str(port),
            "--home",
            str(home),
            "--webhook-url",
            "",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + WAIT
    while True:
        assert proc.poll() is None, (proc.stdout.read() if proc.stdout else b"").decode()
        try:
            if httpx.get(f"http://127.0.0.1:{port}/_sandbox/health", timeout=0.5).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, "sandbox process did not become healthy"
        time.sleep(0.05)


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        assert proc.wait(timeout=WAIT) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_cli_keeps_sessions_across_restarts(tmp_path: Path) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    sdk = stripe.StripeClient(API_KEY, base_addresses={"api": url}, max_network_retries=0)
    params = session_params()
    proc = start_cli(tmp_path, port)
    try:
        session = sdk.v1.checkout.sessions.create(params, {"idempotency_key": "restart-1"})
        assert session.url == f"{url}/pay/{session.id}"
    finally:
        stop(proc)
    assert (tmp_path / "data" / "stripe").is_dir()
    secret_file = webhook_secret_path(tmp_path)
    assert secret_file.exists()

    proc = start_cli(tmp_path, port)
    try:
        assert sdk.v1.checkout.sessions.retrieve(session.id).status == "open"
        replay = sdk.v1.checkout.sessions.create(params, {"idempotency_key": "restart-1"})
        assert replay.id == session.id
        paid = httpx.post(f"{url}/pay/{session.id}", headers={"Accept": "application/json"}, json={})
        assert paid.status_code == 200
        events = httpx.get(f"{url}/_sandbox/events", params={"session": session.id}).json()["data"]
        assert {e["delivery"] for e in events} == {"no_endpoint"}
    finally:
        stop(proc)


def test_webhook_secret_is_made_once_and_env_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # no .env
    monkeypatch.delenv("STRIPE_WEBHOOK_SECRET", raising=False)
    first = load_webhook_secret(tmp_path)
    assert first.startswith("whsec_") and len(first) > 40
    assert load_webhook_secret(tmp_path) == first
    assert webhook_secret_path(tmp_path) == tmp_path / "keys" / "stripe-webhook-secret"
    assert webhook_secret_path(tmp_path).stat().st_mode & 0o077 == 0
    monkeypatch.setenv("STRIPE_WEBHOOK_SECRET", "whsec_explicit")
    assert load_webhook_secret(tmp_path) == "whsec_explicit"
    assert load_webhook_secret(tmp_path, env=False) == first


async def test_webhooks_can_be_switched_off_for_one_session(sandbox, client, receiver):
    """The switch the reconciliation tests use: a muted session's events are recorded, never sent;
    the other sessions' webhooks still are."""
    muted = await client.v1.checkout.sessions.create_async(session_params())
    other = await client.v1.checkout.sessions.create_async(session_params())
    async with httpx.AsyncClient(base_url=sandbox.url, timeout=10) as http:
        switch = f"/_sandbox/sessions/{muted.id}/webhooks"
        assert (await http.post(switch, json={"enabled": "no"})).status_code == 400
        assert (
            await http.post("/_sandbox/sessions/cs_nope/webhooks", json={"enabled": False})
        ).status_code == 404
        r = await http.post(switch, json={"enabled": False})
        assert r.json() == {"session": muted.id, "webhooks": False}
        for s in (muted, other):
            assert (await http.post(f"/_sandbox/sessions/{s.id}/pay", json={})).status_code == 200
    events = await sandbox_events(sandbox, muted.id)
    assert events and {e["delivery"] for e in events} == {"muted"}
    assert all(e["attempts"] == [] for e in events)
    delivered = await sandbox_events(sandbox, other.id)
    assert delivered and all(e["delivery"] != "muted" for e in delivered)
