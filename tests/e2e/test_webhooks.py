"""The signed webhook path: forged and stale signatures, replays, out-of-order and late payments."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import uuid

import grpc
import httpx
import pytest

from petpro_api.payment.v1 import payment_pb2, payment_pb2_grpc
from petpro_dev.stripe_sandbox import load_webhook_secret
from tests.e2e.conftest import Api, eventually

pytestmark = pytest.mark.e2e


def sign(secret: str, body: bytes, at: int | None = None) -> str:
    t = at if at is not None else int(time.time())
    mac = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={t},v1={mac}"


def event(kind: str, obj: dict) -> bytes:
    return json.dumps(
        {
            "id": f"evt_test_{uuid.uuid4().hex}",
            "object": "event",
            "type": kind,
            "created": int(time.time()),
            "api_version": "2026-10-28.endive",
            "livemode": False,
            "data": {"object": obj},
            "pending_webhooks": 1,
            "request": {"id": None},
        }
    ).encode()


async def post_webhook(api: Api, body: bytes, signature: str):  # type: ignore[no-untyped-def]
    return await api.c.post(
        "/webhooks/stripe",
        content=body,
        headers={"Stripe-Signature": signature, "Content-Type": "application/json"},
    )


async def held_booking(api: Api):  # type: ignore[no-untyped-def]
    owner = await api.user()
    r = await api.book(owner, await api.pet(owner), await api.unique_slot())
    assert r.status_code == 201, r.text
    return owner, r.json()


def session_of(held: dict) -> str:
    return held["payment_url"].rsplit("/", 1)[1]


async def payment_of(api: Api, payment_id: str) -> payment_pb2.Payment:
    async with grpc.aio.insecure_channel(api.stack.address("payment")) as ch:
        r = await payment_pb2_grpc.PaymentServiceStub(ch).GetPayment(
            payment_pb2.GetPaymentRequest(payment_id=payment_id), timeout=5
        )
        return r.payment


async def test_forged_and_stale_signatures_are_rejected_and_change_nothing(api: Api):
    owner, held = await held_booking(api)
    secret = load_webhook_secret(api.stack.ctx.home)
    completed = event(
        "checkout.session.completed",
        {
            "id": session_of(held),
            "object": "checkout.session",
            "payment_status": "paid",
            "status": "complete",
            "payment_intent": "pi_forged",
            "metadata": {},
        },
    )
    for signature in (
        sign("whsec_not_the_secret", completed),
        sign(secret, completed, int(time.time()) - 600),
        "garbage",
        sign(secret, completed + b" "),
    ):
        r = await post_webhook(api, completed, signature)
        assert r.status_code == 400, r.text
        assert r.json()["reason"] == "INVALID_SIGNATURE"
    r = await api.c.post("/webhooks/stripe", content=completed)  # no signature header at all
    assert r.status_code == 400
    assert (await api.reservation(owner, held["lock_id"]))["status"] == "PENDING_PAYMENT"


async def test_replayed_and_out_of_order_events_leave_one_booking(api: Api):
    owner, held = await held_booking(api)
    await api.pay(held["payment_url"])
    confirmed = await api.wait_status(owner, held["lock_id"], "CONFIRMED")

    events = await api.sandbox_events(session_of(held))
    by_type = {e["type"]: e for e in events}
    assert by_type.keys() >= {"payment_intent.succeeded", "checkout.session.completed"}
    # one delivery per payment: the endpoint subscribes the fulfilment's event, not the intent's
    assert by_type["payment_intent.succeeded"]["delivery"] == "not_subscribed"
    assert not by_type["payment_intent.succeeded"]["attempts"]

    def delivered(e: dict) -> int:  # type: ignore[type-arg]
        return sum(a.get("status_code") == 200 for a in e["attempts"])

    before = {e["id"]: delivered(e) for e in events}
    async with httpx.AsyncClient(base_url=api.stack.env()["STRIPE_API_BASE"]) as sandbox:
        for e in events:  # Stripe may deliver any event again, and the unsubscribed one anyway
            assert (await sandbox.post(f"/_sandbox/events/{e['id']}/resend")).status_code == 202

    async def all_redelivered():  # type: ignore[no-untyped-def]
        evs = await api.sandbox_events(session_of(held))
        return all(delivered(e) > before[e["id"]] for e in evs)

    await eventually(all_redelivered)

    # a stale "expired" event for the same session arriving late must not undo the payment
    secret = load_webhook_secret(api.stack.ctx.home)
    stale = event(
        "checkout.session.expired",
        {
            "id": session_of(held),
            "object": "checkout.session",
            "status": "expired",
            "payment_status": "unpaid",
            "metadata": {},
        },
    )
    assert (await post_webhook(api, stale, sign(secret, stale))).status_code == 200

    after = await api.reservation(owner, held["lock_id"])
    assert (after["status"], after["booking_id"]) == ("CONFIRMED", confirmed["booking_id"])
    bookings = (await api.c.get("/v1/bookings", headers=owner.auth)).json()["bookings"]
    assert [b["booking_id"] for b in bookings] == [confirmed["booking_id"]]
    payment = await payment_of(api, bookings[0]["payment_id"])
    assert payment.status == payment_pb2.PAYMENT_STATUS_SUCCEEDED


async def test_events_for_unknown_sessions_are_acknowledged_and_ignored(api: Api):
    secret = load_webhook_secret(api.stack.ctx.home)
    body = event(
        "checkout.session.completed",
        {"id": "cs_test_unknown", "object": "checkout.session", "payment_status": "paid", "metadata": {}},
    )
    r = await post_webhook(api, body, sign(secret, body))
    assert r.status_code == 200, r.text


async def test_late_payment_confirms_when_the_slot_is_still_free(api: Api):
    owner, held = await held_booking(api)
    await api.expire_hold(held["lock_id"])
    await api.wait_status(owner, held["lock_id"], "EXPIRED")
    await api.pay(held["payment_url"])
    res = await api.wait_status(owner, held["lock_id"], "CONFIRMED")
    assert res["booking_id"]


async def test_late_payment_for_a_taken_slot_is_refunded(api: Api):
    owner, held = await held_booking(api)
    await api.expire_hold(held["lock_id"])
    await api.wait_status(owner, held["lock_id"], "EXPIRED")
    rival = await api.user()
    slot = held_slot = (await api.reservation(owner, held["lock_id"]))["slot_start_time"]
    assert (await api.book(rival, await api.pet(rival), held_slot)).status_code == 201, slot

    await api.pay(held["payment_url"])
    res = await api.wait_status(owner, held["lock_id"], "FAILED")
    assert res["booking_id"] == ""

    async def refunded():  # type: ignore[no-untyped-def]
        evs = await api.sandbox_events(session_of(held))
        return any(e["type"] == "charge.refunded" for e in evs)

    await eventually(refunded)
    assert (await api.c.get("/v1/bookings", headers=owner.auth)).json()["bookings"] == []
