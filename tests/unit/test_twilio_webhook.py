"""The edge's ``POST /webhooks/twilio/sms``: Twilio's form body and signature handed to notif_worker
byte for byte; 200 with an empty TwiML response, 403 without a signature or with one notif refuses,
503 when notif is unavailable (Twilio retries)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc
import httpx
import pytest

from edge.web.app import create_app
from edge.web.deps import HttpDeps
from petpro_api.notification.v1 import notification_pb2

BODY = b"MessageSid=SM1&From=%2B4915112345678&To=%2B15005550006&Body=STOP&OptOutType=STOP"


class FakeNotification:
    def __init__(self) -> None:
        self.received: list[notification_pb2.HandleInboundSmsRequest] = []
        self.fail: grpc.StatusCode | None = None

    async def HandleInboundSms(self, request: notification_pb2.HandleInboundSmsRequest, **_: Any) -> Any:
        if self.fail is not None:
            raise grpc.aio.AioRpcError(self.fail, grpc.aio.Metadata(), grpc.aio.Metadata(), "refused")
        self.received.append(request)
        return notification_pb2.HandleInboundSmsResponse(outcome="opted_out")


@pytest.fixture
def notif() -> FakeNotification:
    return FakeNotification()


@pytest.fixture
async def client(notif: FakeNotification) -> AsyncIterator[httpx.AsyncClient]:
    deps = HttpDeps(payment=None, booking=None, notification=notif)  # type: ignore[arg-type]
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=create_app(deps)), base_url="http://edge"
    ) as c:
        yield c


async def post(c: httpx.AsyncClient, signature: str | None = "sig=") -> httpx.Response:
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    if signature is not None:
        headers["X-Twilio-Signature"] = signature
    return await c.post("/webhooks/twilio/sms", content=BODY, headers=headers)


async def test_an_incoming_text_reaches_notif_byte_for_byte(client, notif):
    r = await post(client)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/xml")
    assert r.text.endswith("<Response/>")
    [req] = notif.received
    assert (req.payload, req.signature) == (BODY, "sig=")


async def test_no_signature_or_a_refused_one_is_403_and_notif_down_is_503(client, notif):
    r = await post(client, signature=None)
    assert (r.status_code, r.json()["reason"]) == (403, "MISSING_SIGNATURE")
    notif.fail = grpc.StatusCode.PERMISSION_DENIED
    assert (await post(client)).status_code == 403
    notif.fail = grpc.StatusCode.UNAVAILABLE
    assert (await post(client)).status_code == 503
    assert notif.received == []
