"""Firebase Cloud Messaging, HTTP v1 API: a push to an Android or web device
(``POST {api_base}/v1/projects/{project}/messages:send``), authorised by an OAuth 2.0 access token
that google-auth obtains for a service account (its JSON key; the token endpoint from the key or the
``token_uri`` setting) and refreshes before it expires.

Errors, as FCM documents them: 404 NOT_FOUND / UNREGISTERED and 400 INVALID_ARGUMENT on the token
(FcmError errorCode INVALID_ARGUMENT, or a BadRequest field violation on ``message.token``) and 403
SENDER_ID_MISMATCH mean the token is gone (DeviceGone: the device is removed); 429, 5xx and UNAVAILABLE
are transient (PushUnavailable: retried with back-off); 401 drops the access token (the retry gets a
new one); anything else refuses the message (MessageRefused)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from typing import Any

import httpx
from google.auth import transport
from google.oauth2 import service_account

from notif_worker.domain import Device, DeviceGone, MessageRefused

SCOPE = "https://www.googleapis.com/auth/firebase.messaging"
FCM_API_BASE = "https://fcm.googleapis.com"


class PushUnavailable(Exception):
    """The provider could not take the push now (429, 5xx, a network error): try again later."""


class _Response(transport.Response):
    def __init__(self, r: httpx.Response) -> None:
        self._r = r

    @property
    def status(self) -> int:
        return self._r.status_code

    @property
    def headers(self) -> Mapping[str, str]:
        return self._r.headers

    @property
    def data(self) -> bytes:
        return self._r.content


class HttpxRequest(transport.Request):
    """google-auth's transport on a synchronous httpx client (token refreshes run in a thread)."""

    def __init__(self, client: httpx.Client) -> None:
        self.client = client

    def __call__(
        self,
        url: str,
        method: str = "GET",
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
        **kwargs: Any,
    ) -> transport.Response:
        try:
            r = self.client.request(method, url, content=body, headers=headers, timeout=timeout or 10.0)
        except httpx.HTTPError as exc:
            from google.auth import exceptions

            raise exceptions.TransportError(str(exc)) from exc
        return _Response(r)


def _error(r: httpx.Response) -> tuple[str, str, list[dict[str, Any]]]:
    """(status, errorCode, details) of an FCM error body."""
    try:
        err = r.json().get("error", {})
    except (ValueError, AttributeError):
        return "", "", []
    details = [d for d in err.get("details", []) if isinstance(d, dict)]
    code = next((str(d.get("errorCode", "")) for d in details if "FcmError" in str(d.get("@type", ""))), "")
    return str(err.get("status", "")), code, details


def _token_violation(details: list[dict[str, Any]]) -> bool:
    return any(
        v.get("field") == "message.token"
        for d in details
        if "BadRequest" in str(d.get("@type", ""))
        for v in d.get("fieldViolations", [])
    )


class FcmPush:
    """The DevicePush port on FCM HTTP v1, for Android and web devices."""

    platforms = frozenset({"ANDROID", "WEB"})

    def __init__(
        self,
        credentials_file: str,
        *,
        api_base: str = FCM_API_BASE,
        token_uri: str | None = None,
        project_id: str | None = None,
        timeout: float = 10.0,
    ) -> None:
        with open(credentials_file) as f:
            info = json.load(f)
        if token_uri:
            info["token_uri"] = token_uri
        self.credentials = service_account.Credentials.from_service_account_info(info, scopes=[SCOPE])
        self.project_id = project_id or info["project_id"]
        self.url = f"{api_base.rstrip('/')}/v1/projects/{self.project_id}/messages:send"
        self.client = httpx.AsyncClient(timeout=timeout)
        self._auth_client = httpx.Client(timeout=timeout)
        self._refreshing = asyncio.Lock()

    async def close(self) -> None:
        await self.client.aclose()
        self._auth_client.close()

    async def access_token(self) -> str:
        async with self._refreshing:
            if not self.credentials.valid:  # none yet, or expiring (google-auth keeps a clock skew margin)
                await asyncio.to_thread(self.credentials.refresh, HttpxRequest(self._auth_client))
        return str(self.credentials.token)

    async def send(self, device: Device, title: str, body: str, data: dict[str, str]) -> None:
        message = {
            "message": {
                "token": device.token,
                "notification": {"title": title, "body": body},
                "data": data,
                "android": {"priority": "high", "collapse_key": data.get("booking_id", "")},
            }
        }
        try:
            token = await self.access_token()
            r = await self.client.post(self.url, json=message, headers={"Authorization": f"Bearer {token}"})
        except Exception as exc:  # the token endpoint or FCM unreachable
            raise PushUnavailable(f"fcm: {type(exc).__name__}: {exc}") from exc
        if r.status_code == 200:
            return
        status, code, details = _error(r)
        if r.status_code == 404 or code == "UNREGISTERED":
            raise DeviceGone(f"fcm: {code or status}")
        if r.status_code == 400 and (code == "INVALID_ARGUMENT" or _token_violation(details)):
            raise DeviceGone("fcm: the registration token is not valid")
        if r.status_code == 403 and code == "SENDER_ID_MISMATCH":
            raise DeviceGone("fcm: the token belongs to another sender")
        if r.status_code == 401:
            self.credentials.token = None  # refresh on the retry
            raise PushUnavailable("fcm: access token refused (401)")
        if r.status_code == 429 or r.status_code >= 500:
            raise PushUnavailable(f"fcm: {r.status_code} {code or status}")
        raise MessageRefused(f"fcm: {r.status_code} {code or status}: {r.text[:200]}")
