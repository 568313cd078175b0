"""Apple Push Notification service: a push to an iOS device over HTTP/2
(``POST {api_base}/3/device/{token}``), authorised by a provider token: a JWT signed with ES256 by the
team's .p8 key (header ``kid`` = key id, claims ``iss`` = team id and ``iat``), reused for 30 minutes
(Apple refuses one older than an hour and throttles fresher ones).

Errors, as Apple documents them: 410 Unregistered and 400 BadDeviceToken / DeviceTokenNotForTopic mean
the token is gone (DeviceGone: the device is removed); 429 and 5xx are transient (retried with
back-off); 403 ExpiredProviderToken makes a new provider token for the retry; anything else refuses the
message (MessageRefused)."""

from __future__ import annotations

import time
from typing import Any

import httpx
import jwt

from notif_worker.adapters.fcm import PushUnavailable
from notif_worker.domain import Device, DeviceGone, MessageRefused

APNS_API_BASE = "https://api.push.apple.com"
TOKEN_TTL = 30 * 60  # seconds a provider token is reused
GONE = {"Unregistered", "BadDeviceToken", "DeviceTokenNotForTopic"}


class ApnsPush:
    """The DevicePush port on APNs (token-based authentication), for iOS devices."""

    platforms = frozenset({"IOS"})

    def __init__(
        self,
        key_file: str,
        key_id: str,
        team_id: str,
        topic: str,
        *,
        api_base: str = APNS_API_BASE,
        timeout: float = 10.0,
    ) -> None:
        with open(key_file) as f:
            self.key = f.read()
        self.key_id = key_id
        self.team_id = team_id
        self.topic = topic
        self.api_base = api_base.rstrip("/")
        # APNs speaks HTTP/2 only: prior knowledge on a cleartext base (a local stand-in), ALPN on TLS
        self.client = httpx.AsyncClient(http1=False, http2=True, timeout=timeout)
        self._token: tuple[float, str] | None = None

    async def close(self) -> None:
        await self.client.aclose()

    def provider_token(self) -> str:
        now = time.time()
        if self._token is None or now - self._token[0] > TOKEN_TTL:
            signed = jwt.encode(
                {"iss": self.team_id, "iat": int(now)},
                self.key,
                algorithm="ES256",
                headers={"kid": self.key_id},
            )
            self._token = (now, signed)
        return self._token[1]

    async def send(self, device: Device, title: str, body: str, data: dict[str, str]) -> None:
        payload: dict[str, Any] = {
            "aps": {"alert": {"title": title, "body": body}, "sound": "default"},
            **data,
        }
        headers = {
            "authorization": f"bearer {self.provider_token()}",
            "apns-topic": self.topic,
            "apns-push-type": "alert",
            "apns-priority": "10",
        }
        if data.get("booking_id"):
            headers["apns-collapse-id"] = data["booking_id"][:64]
        try:
            r = await self.client.post(
                f"{self.api_base}/3/device/{device.token}", json=payload, headers=headers
            )
        except httpx.HTTPError as exc:
            raise PushUnavailable(f"apns: {type(exc).__name__}: {exc}") from exc
        if r.status_code == 200:
            return
        try:
            reason = str(r.json().get("reason", ""))
        except (ValueError, AttributeError):
            reason = ""
        if r.status_code == 410 or reason in GONE:
            raise DeviceGone(f"apns: {r.status_code} {reason}")
        if r.status_code == 403 and reason == "ExpiredProviderToken":
            self._token = None
            raise PushUnavailable("apns: provider token expired")
        if r.status_code == 429 or r.status_code >= 500:
            raise PushUnavailable(f"apns: {r.status_code} {reason}")
        raise MessageRefused(f"apns: {r.status_code} {reason}")
