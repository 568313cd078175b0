"""The SMS adapter (the official ``twilio`` SDK, its base URL on the dev stack's Twilio stand-in)
against Twilio's documented Messages API: a text is accepted and listed, an invalid number is
MessageRefused (21211), a number that replied STOP is PhoneOptedOut (21610) until START, bad
credentials are refused (20003), the inbound webhook's signature is Twilio's and our validator
accepts it, a wrong one not."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qsl

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from twilio.base.exceptions import TwilioRestException

from notif_worker.adapters.sms import TwilioSms
from notif_worker.domain import MessageRefused, PhoneOptedOut, SendOutcomeUnknown
from petpro_dev.devstack import Stack
from petpro_dev.sms_sandbox.app import build_app, signature
from petpro_dev.sms_sandbox.credentials import DevCredentials

pytestmark = pytest.mark.integration


def number() -> str:
    return f"+4915{uuid.uuid4().int % 10**9:09d}"


@pytest.fixture(scope="module")
def env(devstack: Stack) -> dict[str, str]:
    return devstack.env()


@pytest.fixture
async def twilio(env: dict[str, str]) -> AsyncIterator[TwilioSms]:
    sms = TwilioSms(
        env["NOTIF_SMS_ACCOUNT_SID"],
        env["NOTIF_SMS_AUTH_TOKEN"],
        env["NOTIF_SMS_FROM"],
        api_base=env["NOTIF_SMS_API_BASE"],
    )
    yield sms
    await sms.close()


async def sandbox_messages(env: dict[str, str], to: str) -> list[dict[str, object]]:
    async with httpx.AsyncClient(base_url=env["SMS_API_BASE"], timeout=10) as c:
        return (await c.get("/_sandbox/messages", params={"to": to})).json()  # type: ignore[no-any-return]


async def test_a_text_is_sent_and_found_again_by_number_time_and_body(env, twilio):
    to, before = number(), datetime.now(UTC)
    sid = await twilio.send(to, "Reminder: Check-up for Rex")
    assert sid.startswith("SM")
    [msg] = await sandbox_messages(env, to)
    assert (msg["sid"], msg["body"], msg["from"], msg["status"]) == (
        sid,
        "Reminder: Check-up for Rex",
        env["NOTIF_SMS_FROM"],
        "queued",
    )
    assert await twilio.sent_since(to, "Reminder: Check-up for Rex", before) == sid
    assert await twilio.sent_since(to, "another text", before) is None
    assert await twilio.sent_since(number(), "Reminder: Check-up for Rex", before) is None
    assert await twilio.sent_since(to, "Reminder: Check-up for Rex", before + timedelta(minutes=5)) is None


async def test_a_send_answered_late_is_bounded_by_the_timeout_and_found_by_its_body(env):
    """The stand-in takes the text and answers late: the call ends at the adapter's timeout (the SDK's
    own client timeout bounds nothing) with an unknown outcome, and the list finds the text by its
    exact body, not another text to the number that reads the same but for its reference."""
    to, before = number(), datetime.now(UTC)
    async with httpx.AsyncClient(base_url=env["SMS_API_BASE"], timeout=10) as c:
        (await c.post("/_sandbox/slow", json={"to": to, "seconds": 30})).raise_for_status()
    sms = TwilioSms(
        env["NOTIF_SMS_ACCOUNT_SID"],
        env["NOTIF_SMS_AUTH_TOKEN"],
        env["NOTIF_SMS_FROM"],
        api_base=env["NOTIF_SMS_API_BASE"],
        timeout=0.5,
    )
    try:
        with pytest.raises(SendOutcomeUnknown, match="did not answer"):
            await sms.send(to, "Reminder: Check-up for Rex Ref AAAAAAAA")
        sid = await sms.sent_since(to, "Reminder: Check-up for Rex Ref AAAAAAAA", before)
        assert sid is not None and sid.startswith("SM")
        assert await sms.sent_since(to, "Reminder: Check-up for Rex Ref BBBBBBBB", before) is None
    finally:
        await sms.close()


async def test_an_invalid_number_is_refused_for_good(twilio):
    with pytest.raises(MessageRefused, match="21211"):
        await twilio.send("+15005550001", "hello")  # Twilio's magic invalid number
    with pytest.raises(MessageRefused, match="21211"):
        await twilio.send("+0123", "hello")


async def test_stop_unsubscribes_the_number_until_start(env, twilio):
    to = number()
    async with httpx.AsyncClient(base_url=env["SMS_API_BASE"], timeout=10) as c:
        r = await c.post("/_sandbox/inbound", json={"from": to, "body": "STOP"})
        assert r.json()["opt_out_type"] == "STOP"
        with pytest.raises(PhoneOptedOut, match="21610"):
            await twilio.send(to, "hello")
        await c.post("/_sandbox/inbound", json={"from": to, "body": "start"})
    assert (await twilio.send(to, "hello")).startswith("SM")


async def test_bad_credentials_are_refused(env):
    sms = TwilioSms(
        env["NOTIF_SMS_ACCOUNT_SID"], "wrong", env["NOTIF_SMS_FROM"], api_base=env["NOTIF_SMS_API_BASE"]
    )
    try:
        with pytest.raises(TwilioRestException) as exc:
            await sms.send(number(), "hello")
        assert (exc.value.status, exc.value.code) == (401, 20003)
    finally:
        await sms.close()


async def test_the_stand_ins_webhook_signature_is_twilios(twilio, env):
    """The stand-in posts STOP signed as Twilio signs; the SDK's validator (what notif_worker uses)
    accepts exactly that signature."""
    received: list[tuple[str, dict[str, str], str]] = []

    async def hook(request: Request) -> Response:
        params = dict(parse_qsl((await request.body()).decode()))
        received.append((str(request.url), params, request.headers["x-twilio-signature"]))
        return Response("<Response/>", media_type="text/xml")

    url = "http://testserver/webhooks/twilio/sms"
    creds = DevCredentials(env["NOTIF_SMS_ACCOUNT_SID"], env["NOTIF_SMS_AUTH_TOKEN"])
    params = {"From": "+4915100000000", "Body": "STOP", "OptOutType": "STOP", "To": creds.sender}
    sig = signature(creds.auth_token, url, params)
    assert twilio.valid_webhook(url, params, sig)
    assert not twilio.valid_webhook(url, {**params, "Body": "START"}, sig)
    assert not twilio.valid_webhook(url, params, "")
    app = Starlette(routes=[Route("/webhooks/twilio/sms", hook, methods=["POST"])])
    sandbox = build_app(creds, url)
    # the stand-in's own poster, through an in-process transport to the hook
    transport = httpx.ASGITransport(app=sandbox)
    async with httpx.AsyncClient(transport=transport, base_url="http://sandbox") as c:
        original = httpx.AsyncClient

        class ToHook(httpx.AsyncClient):
            def __init__(self, **kwargs: object) -> None:
                super().__init__(transport=httpx.ASGITransport(app=app), **kwargs)  # type: ignore[arg-type]

        httpx.AsyncClient = ToHook  # type: ignore[misc]
        try:
            r = await c.post("/_sandbox/inbound", json={"from": "+4915100000000", "body": "STOP"})
        finally:
            httpx.AsyncClient = original  # type: ignore[misc]
    assert r.json()["delivered"] is True
    [(_, got, sig)] = received
    assert got["OptOutType"] == "STOP" and twilio.valid_webhook(url, got, sig)
