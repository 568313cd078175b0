"""The push adapters (FCM HTTP v1 with google-auth's service-account grant, APNs over HTTP/2 with an
ES256 provider token) against the dev stack's stand-in, which speaks the providers' documented API:
a push is accepted and recorded as sent, a gone token is DeviceGone, a transient error is
PushUnavailable, a refused credential is seen as such."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from notif_worker.adapters.apns import ApnsPush
from notif_worker.adapters.fcm import FcmPush, PushUnavailable
from notif_worker.domain import Device, DeviceGone, MessageRefused
from petpro_dev.devstack import Stack
from petpro_dev.push_sandbox.keys import ensure

pytestmark = pytest.mark.integration
DATA = {"booking_id": "b-1", "type": "booking.created", "start_time": "2026-03-29T10:00:00+02:00"}


@pytest.fixture(scope="module")
def sandbox(devstack: Stack) -> str:
    return devstack.env()["PUSH_API_BASE"]


@pytest.fixture(scope="module")
def env(devstack: Stack) -> dict[str, str]:
    return devstack.env()


@pytest.fixture
async def fcm(env: dict[str, str]) -> AsyncIterator[FcmPush]:
    push = FcmPush(
        env["NOTIF_FCM_CREDENTIALS_FILE"],
        api_base=env["NOTIF_FCM_API_BASE"],
        token_uri=env["NOTIF_FCM_TOKEN_URI"],
    )
    yield push
    await push.close()


@pytest.fixture
async def apns(env: dict[str, str]) -> AsyncIterator[ApnsPush]:
    push = ApnsPush(
        env["NOTIF_APNS_KEY_FILE"],
        env["NOTIF_APNS_KEY_ID"],
        env["NOTIF_APNS_TEAM_ID"],
        env["NOTIF_APNS_TOPIC"],
        api_base=env["NOTIF_APNS_API_BASE"],
    )
    yield push
    await push.close()


def fcm_token() -> str:
    return f"fcm-{uuid.uuid4().hex}:{uuid.uuid4().hex}"


def apns_token() -> str:
    return uuid.uuid4().hex + uuid.uuid4().hex


async def control(sandbox: str, path: str, body: dict[str, object] | None = None) -> list[dict[str, object]]:
    async with httpx.AsyncClient(base_url=sandbox) as c:
        r = await (c.post(path, json=body) if body is not None else c.get(path))
        r.raise_for_status()
        result: list[dict[str, object]] = r.json() if body is None else []
        return result


async def test_fcm_delivers_with_an_oauth_token_of_the_service_account(fcm: FcmPush, sandbox: str) -> None:
    device = Device(uuid.uuid4(), "ANDROID", fcm_token())
    await fcm.send(device, "Booking confirmed: Check-up", "Rex at Vet Mitte", DATA)
    await fcm.send(device, "again", "the access token is reused", DATA)
    sent = await control(sandbox, f"/_sandbox/messages?token={device.token}")
    assert [(m["provider"], m["title"], m["data"]) for m in sent] == [
        ("fcm", "Booking confirmed: Check-up", DATA),
        ("fcm", "again", DATA),
    ]
    assert fcm.credentials.token and fcm.credentials.token.startswith("ya29.dev-")


async def test_fcm_unregistered_and_invalid_tokens_are_gone(fcm: FcmPush, sandbox: str) -> None:
    gone = fcm_token()
    await control(sandbox, "/_sandbox/unregister", {"token": gone})
    with pytest.raises(DeviceGone, match="UNREGISTERED"):
        await fcm.send(Device(uuid.uuid4(), "ANDROID", gone), "t", "b", DATA)
    with pytest.raises(DeviceGone, match="not valid"):
        await fcm.send(Device(uuid.uuid4(), "WEB", "short!"), "t", "b", DATA)


@pytest.mark.parametrize("status", [429, 500, 503])
async def test_fcm_transient_errors_are_unavailable_then_it_delivers(
    fcm: FcmPush, sandbox: str, status: int
) -> None:
    token = fcm_token()
    await control(sandbox, "/_sandbox/faults", {"token": token, "status": status, "count": 1})
    with pytest.raises(PushUnavailable, match=str(status)):
        await fcm.send(Device(uuid.uuid4(), "ANDROID", token), "t", "b", DATA)
    await fcm.send(Device(uuid.uuid4(), "ANDROID", token), "t", "b", DATA)


async def test_fcm_refuses_another_project_and_an_unknown_service_account(
    env: dict[str, str], tmp_path: Path
) -> None:
    other = FcmPush(
        env["NOTIF_FCM_CREDENTIALS_FILE"],
        api_base=env["NOTIF_FCM_API_BASE"],
        token_uri=env["NOTIF_FCM_TOKEN_URI"],
        project_id="someone-else",
    )
    try:
        with pytest.raises(MessageRefused, match="403"):
            await other.send(Device(uuid.uuid4(), "ANDROID", fcm_token()), "t", "b", DATA)
    finally:
        await other.close()
    stranger = ensure(tmp_path)  # a key the stand-in never issued
    info = json.loads(stranger.fcm_credentials.read_text())
    assert info["client_email"]  # same account name, another key: the grant's signature fails
    unknown = FcmPush(
        str(stranger.fcm_credentials),
        api_base=env["NOTIF_FCM_API_BASE"],
        token_uri=env["NOTIF_FCM_TOKEN_URI"],
    )
    try:
        with pytest.raises(PushUnavailable, match="RefreshError"):
            await unknown.send(Device(uuid.uuid4(), "ANDROID", fcm_token()), "t", "b", DATA)
    finally:
        await unknown.close()


async def test_apns_delivers_over_http2_with_the_provider_token(apns: ApnsPush, sandbox: str) -> None:
    device = Device(uuid.uuid4(), "IOS", apns_token())
    await apns.send(device, "Booking confirmed: Check-up", "Rex at Vet Mitte", DATA)
    (sent,) = await control(sandbox, f"/_sandbox/messages?token={device.token}")
    assert (sent["provider"], sent["title"], sent["body"], sent["push_type"]) == (
        "apns",
        "Booking confirmed: Check-up",
        "Rex at Vet Mitte",
        "alert",
    )
    assert sent["data"] == DATA


async def test_apns_unregistered_and_bad_tokens_are_gone(apns: ApnsPush, sandbox: str) -> None:
    gone = apns_token()
    await control(sandbox, "/_sandbox/unregister", {"token": gone})
    with pytest.raises(DeviceGone, match="410 Unregistered"):
        await apns.send(Device(uuid.uuid4(), "IOS", gone), "t", "b", DATA)
    with pytest.raises(DeviceGone, match="BadDeviceToken"):
        await apns.send(Device(uuid.uuid4(), "IOS", "not-a-device-token"), "t", "b", DATA)


@pytest.mark.parametrize("status", [429, 500, 503])
async def test_apns_transient_errors_are_unavailable(apns: ApnsPush, sandbox: str, status: int) -> None:
    token = apns_token()
    await control(sandbox, "/_sandbox/faults", {"token": token, "status": status, "count": 1})
    with pytest.raises(PushUnavailable, match=str(status)):
        await apns.send(Device(uuid.uuid4(), "IOS", token), "t", "b", DATA)
    await apns.send(Device(uuid.uuid4(), "IOS", token), "t", "b", DATA)


async def test_apns_refuses_a_provider_token_of_another_key_and_plain_http1(
    env: dict[str, str], sandbox: str, tmp_path: Path
) -> None:
    stranger = ensure(tmp_path)
    wrong = ApnsPush(
        str(stranger.apns_key),
        env["NOTIF_APNS_KEY_ID"],
        env["NOTIF_APNS_TEAM_ID"],
        env["NOTIF_APNS_TOPIC"],
        api_base=sandbox,
    )
    try:
        with pytest.raises(MessageRefused, match="InvalidProviderToken"):
            await wrong.send(Device(uuid.uuid4(), "IOS", apns_token()), "t", "b", DATA)
    finally:
        await wrong.close()
    async with httpx.AsyncClient() as http1:
        r = await http1.post(f"{sandbox}/3/device/{apns_token()}", json={"aps": {"alert": "x"}})
    assert r.status_code == 400 and "HTTP/2" in r.text
