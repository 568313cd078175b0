"""The stand-in's HTTP API (Starlette, served by Hypercorn: HTTP/1.1 and HTTP/2 on one port).

FCM, as documented for the HTTP v1 API:
- ``POST /token``: the OAuth 2.0 JWT-bearer grant (``grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer``,
  ``assertion`` = a JWT signed RS256 by the service account's key, ``iss`` its client email, ``scope``
  firebase.messaging, ``aud`` the token endpoint, at most an hour long) → ``{"access_token", "expires_in",
  "token_type": "Bearer"}``; a bad grant is 400 ``invalid_grant``.
- ``POST /v1/projects/{project}/messages:send`` with ``Authorization: Bearer <access token>``: 401
  UNAUTHENTICATED without a valid one, 403 PERMISSION_DENIED for another project, 400 INVALID_ARGUMENT
  with a BadRequest field violation for a malformed message, 400 INVALID_ARGUMENT (FcmError
  INVALID_ARGUMENT) for a token that is not a registration token, 404 NOT_FOUND (FcmError UNREGISTERED)
  for an unregistered one; else ``{"name": "projects/{project}/messages/{id}"}``.

APNs, as documented (HTTP/2 only):
- ``POST /3/device/{token}`` with ``authorization: bearer <provider token>`` (ES256, ``kid`` the key id,
  ``iss`` the team id, ``iat`` within the hour: else 403 InvalidProviderToken / ExpiredProviderToken),
  ``apns-topic`` (400 MissingTopic / 400 TopicDisallowed), a JSON payload with ``aps`` (400 PayloadEmpty /
  BadPayload... as ``{"reason": ...}``); a token that is not 64 hex digits is 400 BadDeviceToken, an
  unregistered one 410 ``{"reason": "Unregistered", "timestamp": ms}``; else 200 with ``apns-id``.
  HTTP/1.1 is refused (APNs speaks HTTP/2 only).

Test controls under ``/_sandbox``: ``GET messages`` (what was accepted), ``POST unregister`` {"token"}
(the app was uninstalled), ``POST faults`` {"token", "status", "count"} (the next sends to that token
answer a transient error), ``GET health``.
"""

from __future__ import annotations

import json
import re
import secrets
import time
import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

import jwt
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from petpro_dev.push_sandbox.keys import DevKeys

JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
FCM_SCOPE = "https://www.googleapis.com/auth/firebase.messaging"
FCM_TOKEN = re.compile(r"^[A-Za-z0-9_:\-]{20,4096}$")
APNS_TOKEN = re.compile(r"^[0-9a-fA-F]{64}$")


@dataclass
class State:
    keys: DevKeys
    access_tokens: dict[str, float] = field(default_factory=dict)  # token → expiry (epoch)
    unregistered: dict[str, int] = field(default_factory=dict)  # device token → since (ms)
    faults: dict[str, tuple[int, int]] = field(default_factory=dict)  # device token → (status, count)
    messages: list[dict[str, Any]] = field(default_factory=list)

    def fault(self, token: str) -> int | None:
        status, count = self.faults.get(token, (0, 0))
        if count <= 0:
            return None
        self.faults[token] = (status, count - 1)
        return status


def _fcm_error(code: int, status: str, message: str, *details: dict[str, Any]) -> JSONResponse:
    body: dict[str, Any] = {"code": code, "message": message, "status": status}
    if details:
        body["details"] = list(details)
    return JSONResponse({"error": body}, status_code=code)


def _fcm_code(error_code: str) -> dict[str, Any]:
    return {"@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError", "errorCode": error_code}


def _apns_error(status: int, reason: str, **extra: Any) -> JSONResponse:
    return JSONResponse(
        {"reason": reason, **extra}, status_code=status, headers={"apns-id": str(uuid.uuid4())}
    )


def build_app(keys: DevKeys) -> Starlette:
    state = State(keys)
    account = keys.service_account()
    fcm_public = keys.fcm_public_key_pem()
    apns_meta = keys.apns()
    apns_public = keys.apns_public_key_pem()

    async def token(request: Request) -> Response:
        # application/x-www-form-urlencoded, read without python-multipart
        form = {k: v[0] for k, v in parse_qs((await request.body()).decode()).items()}
        if form.get("grant_type") != JWT_BEARER:
            return JSONResponse({"error": "unsupported_grant_type"}, status_code=400)
        try:
            claims = jwt.decode(
                str(form.get("assertion", "")),
                fcm_public,
                algorithms=["RS256"],
                options={"verify_aud": False, "require": ["iss", "aud", "iat", "exp"]},
            )
        except jwt.PyJWTError as exc:
            return JSONResponse({"error": "invalid_grant", "error_description": str(exc)}, status_code=400)
        if claims["iss"] != account["client_email"] or not str(claims["aud"]).endswith("/token"):
            return JSONResponse(
                {"error": "invalid_grant", "error_description": "bad iss or aud"}, status_code=400
            )
        if claims["exp"] - claims["iat"] > 3600 or FCM_SCOPE not in str(claims.get("scope", "")).split():
            return JSONResponse({"error": "invalid_scope"}, status_code=400)
        access = f"ya29.dev-{secrets.token_urlsafe(24)}"
        state.access_tokens[access] = time.time() + 3600
        return JSONResponse({"access_token": access, "expires_in": 3599, "token_type": "Bearer"})

    async def fcm_send(request: Request) -> Response:
        auth = request.headers.get("authorization", "")
        access = auth.removeprefix("Bearer ").strip() if auth.startswith("Bearer ") else ""
        if state.access_tokens.get(access, 0) < time.time():
            return _fcm_error(
                401,
                "UNAUTHENTICATED",
                "Request had invalid authentication credentials. Expected OAuth 2 access token.",
            )
        project = request.path_params["project"]
        if project != account["project_id"]:
            return _fcm_error(403, "PERMISSION_DENIED", f"Permission denied on project {project}.")
        try:
            message = (await request.json())["message"]
            target = message["token"]
            data = message.get("data", {})
            assert isinstance(target, str) and isinstance(data, dict)
            assert all(isinstance(v, str) for v in data.values())
        except Exception:
            return _fcm_error(
                400,
                "INVALID_ARGUMENT",
                "Invalid JSON payload received.",
                {
                    "@type": "type.googleapis.com/google.rpc.BadRequest",
                    "fieldViolations": [
                        {"field": "message", "description": "a message with a token is required"}
                    ],
                },
            )
        fault = state.fault(target)
        if fault is not None:
            status = "UNAVAILABLE" if fault >= 500 else "RESOURCE_EXHAUSTED"
            return _fcm_error(
                fault,
                status,
                "The service is currently unavailable.",
                _fcm_code(status if fault < 500 else "UNAVAILABLE"),
            )
        if not FCM_TOKEN.match(target):
            return _fcm_error(
                400,
                "INVALID_ARGUMENT",
                "The registration token is not a valid FCM registration token",
                _fcm_code("INVALID_ARGUMENT"),
            )
        if target in state.unregistered:
            return _fcm_error(404, "NOT_FOUND", "Requested entity was not found.", _fcm_code("UNREGISTERED"))
        name = f"projects/{project}/messages/{secrets.randbelow(10**16)}"
        notification = message.get("notification", {})
        state.messages.append(
            {
                "provider": "fcm",
                "token": target,
                "title": notification.get("title", ""),
                "body": notification.get("body", ""),
                "data": data,
                "name": name,
            }
        )
        return JSONResponse({"name": name})

    async def apns_send(request: Request) -> Response:
        raw = await request.body()  # read it all first: an HTTP/2 stream answered early is reset
        if request.scope.get("http_version") != "2":
            return _apns_error(400, "BadRequest", detail="APNs speaks HTTP/2 only")
        auth = request.headers.get("authorization", "")
        if not auth.startswith("bearer "):
            return _apns_error(403, "MissingProviderToken")
        provider_token = auth.removeprefix("bearer ")
        try:
            header = jwt.get_unverified_header(provider_token)
            claims = jwt.decode(
                provider_token, apns_public, algorithms=["ES256"], options={"require": ["iss", "iat"]}
            )
        except jwt.PyJWTError:
            return _apns_error(403, "InvalidProviderToken")
        if header.get("kid") != apns_meta["key_id"] or claims["iss"] != apns_meta["team_id"]:
            return _apns_error(403, "InvalidProviderToken")
        if time.time() - float(claims["iat"]) > 3600:
            return _apns_error(403, "ExpiredProviderToken")
        topic = request.headers.get("apns-topic")
        if not topic:
            return _apns_error(400, "MissingTopic")
        if topic != apns_meta["topic"]:
            return _apns_error(400, "TopicDisallowed")
        target = request.path_params["token"]
        fault = state.fault(target)
        if fault is not None:
            return _apns_error(fault, "TooManyRequests" if fault == 429 else "ServiceUnavailable")
        if not APNS_TOKEN.match(target):
            return _apns_error(400, "BadDeviceToken")
        if target in state.unregistered:
            return _apns_error(410, "Unregistered", timestamp=state.unregistered[target])
        try:
            payload = json.loads(raw)
            alert = payload["aps"]["alert"]
        except Exception:
            return _apns_error(400, "PayloadEmpty" if not raw else "BadPayload")
        apns_id = request.headers.get("apns-id") or str(uuid.uuid4())
        state.messages.append(
            {
                "provider": "apns",
                "token": target,
                "title": alert.get("title", "") if isinstance(alert, dict) else str(alert),
                "body": alert.get("body", "") if isinstance(alert, dict) else "",
                "data": {k: v for k, v in payload.items() if k != "aps"},
                "apns_id": apns_id,
                "push_type": request.headers.get("apns-push-type", ""),
            }
        )
        return Response(status_code=200, headers={"apns-id": apns_id})

    async def messages(request: Request) -> Response:
        wanted = request.query_params.get("token")
        return JSONResponse([m for m in state.messages if wanted is None or m["token"] == wanted])

    async def unregister(request: Request) -> Response:
        state.unregistered[str((await request.json())["token"])] = int(time.time() * 1000)
        return JSONResponse({"ok": True})

    async def faults(request: Request) -> Response:
        body = await request.json()
        state.faults[str(body["token"])] = (int(body.get("status", 503)), int(body.get("count", 1)))
        return JSONResponse({"ok": True})

    async def health(request: Request) -> Response:
        return JSONResponse({"ok": True})

    return Starlette(
        routes=[
            Route("/token", token, methods=["POST"]),
            Route("/v1/projects/{project}/messages:send", fcm_send, methods=["POST"]),
            Route("/3/device/{token}", apns_send, methods=["POST"]),
            Route("/_sandbox/messages", messages, methods=["GET"]),
            Route("/_sandbox/unregister", unregister, methods=["POST"]),
            Route("/_sandbox/faults", faults, methods=["POST"]),
            Route("/_sandbox/health", health, methods=["GET"]),
        ]
    )
