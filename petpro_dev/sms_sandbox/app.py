"""The stand-in's HTTP API (Starlette), as Twilio documents its Messages resource (API 2010-04-01):

- ``POST /2010-04-01/Accounts/{AccountSid}/Messages.json``, form-encoded ``To``, ``From``, ``Body``
  (``StatusCallback`` optional), HTTP Basic auth with the Account SID and auth token: 401 with error
  20003 without them, 404 with 20404 for another account; 400 with 21604 (no ``To``), 21602 (no
  ``Body``), 21211 (``To`` not an E.164 number, or a number Twilio's test docs name invalid:
  ``+15005550001``), 21606 (``From`` not ours), 21610 (the recipient replied STOP: "Attempt to send to
  unsubscribed recipient"); else 201 with the Message resource (``sid`` "SM…", ``status`` "queued").
  Error bodies are Twilio's: ``{"code", "message", "more_info", "status"}``.
- ``GET /2010-04-01/Accounts/{AccountSid}/Messages.json`` with ``To`` and ``DateSent>`` filters, paged
  as Twilio pages (``messages``, ``next_page_uri``...).

Inbound messages, as Twilio's Advanced Opt-Out handles them: ``POST /_sandbox/inbound`` {"from",
"body"} is a text the owner sent to our number. "STOP" (or STOPALL, UNSUBSCRIBE, CANCEL, END, QUIT)
unsubscribes the number from ours (later sends answer 21610), "START" (YES, UNSTOP) subscribes it
again; either way the message is posted to the incoming-message webhook (``--webhook-url``) as
Twilio posts it: form-encoded ``MessageSid``, ``AccountSid``, ``From``, ``To``, ``Body``,
``OptOutType`` with ``X-Twilio-Signature`` (HMAC-SHA1 of the URL and the sorted parameters, keyed with
the auth token). Its answer is returned.

Test controls under ``/_sandbox``: ``GET messages`` (``?to=``: what was accepted), ``POST slow`` {"to",
"seconds"} (the next text to that number is accepted at once but answered late: a worker killed
meanwhile never learns it went), ``GET health``.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any
from urllib.parse import parse_qsl

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from petpro_dev.sms_sandbox.credentials import DevCredentials

E164 = re.compile(r"^\+[1-9]\d{6,14}$")
INVALID_NUMBERS = {"+15005550001"}  # Twilio's test docs: "This phone number is invalid."
STOP_WORDS = {"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT"}
START_WORDS = {"START", "YES", "UNSTOP"}
API = "/2010-04-01/Accounts/{account}/Messages.json"


def signature(auth_token: str, url: str, params: dict[str, str]) -> str:
    """X-Twilio-Signature: base64(HMAC-SHA1(auth token, url + each key and value, keys sorted))."""
    data = url + "".join(k + params[k] for k in sorted(params))
    return base64.b64encode(hmac.new(auth_token.encode(), data.encode(), hashlib.sha1).digest()).decode()


@dataclass
class State:
    creds: DevCredentials
    webhook_url: str = ""
    unsubscribed: set[str] = field(default_factory=set)
    slow: dict[str, float] = field(
        default_factory=dict
    )  # number → seconds the next accepted send answers late
    messages: list[dict[str, Any]] = field(default_factory=list)


def _error(status: int, code: int, message: str) -> JSONResponse:
    return JSONResponse(
        {
            "code": code,
            "message": message,
            "more_info": f"https://www.twilio.com/docs/errors/{code}",
            "status": status,
        },
        status_code=status,
    )


def _rfc2822(t: datetime) -> str:
    return format_datetime(t, usegmt=True)


def build_app(creds: DevCredentials, webhook_url: str = "") -> Starlette:
    state = State(creds, webhook_url)

    def authorised(request: Request) -> JSONResponse | None:
        scheme, _, raw = request.headers.get("authorization", "").partition(" ")
        try:
            user, _, password = base64.b64decode(raw).decode().partition(":")
        except Exception:
            user = password = ""
        if scheme.lower() != "basic" or not (
            hmac.compare_digest(user, creds.account_sid) and hmac.compare_digest(password, creds.auth_token)
        ):
            return _error(401, 20003, "Authenticate")
        if request.path_params["account"] != creds.account_sid:
            return _error(404, 20404, "The requested resource was not found")
        return None

    async def create(request: Request) -> Response:
        denied = authorised(request)
        if denied is not None:
            return denied
        form = dict(parse_qsl((await request.body()).decode(), keep_blank_values=True))
        to, sender, body = form.get("To", ""), form.get("From", ""), form.get("Body", "")
        if not to:
            return _error(400, 21604, "A 'To' phone number is required.")
        if not body:
            return _error(400, 21602, "Message body is required.")
        if not E164.match(to) or to in INVALID_NUMBERS:
            return _error(400, 21211, f"The 'To' number {to} is not a valid phone number.")
        if sender != creds.sender:
            return _error(
                400,
                21606,
                f"The From phone number {sender} is not a valid, SMS-capable inbound phone number or short code for your account.",
            )
        if to in state.unsubscribed:
            return _error(400, 21610, "Attempt to send to unsubscribed recipient")
        now = datetime.now(UTC)
        sid = "SM" + secrets.token_hex(16)
        msg = {
            "sid": sid,
            "account_sid": creds.account_sid,
            "to": to,
            "from": sender,
            "body": body,
            "status": "queued",
            "direction": "outbound-api",
            "num_segments": str(max(1, -(-len(body) // 153))),
            "num_media": "0",
            "api_version": "2010-04-01",
            "date_created": _rfc2822(now),
            "date_updated": _rfc2822(now),
            "date_sent": _rfc2822(now),
            "price": None,
            "price_unit": "USD",
            "error_code": None,
            "error_message": None,
            "messaging_service_sid": None,
            "uri": f"{API.format(account=creds.account_sid)[:-5]}/{sid}.json",
            "subresource_uris": {"media": f"{API.format(account=creds.account_sid)[:-5]}/{sid}/Media.json"},
        }
        state.messages.append({**msg, "_at": now.timestamp()})
        delay = state.slow.pop(to, 0.0)
        if delay:  # taken, but the answer is late: a client that dies meanwhile never learns it went
            await asyncio.sleep(delay)
        return JSONResponse(msg, status_code=201)

    async def listing(request: Request) -> Response:
        denied = authorised(request)
        if denied is not None:
            return denied
        q = request.query_params
        found = [m for m in state.messages if not q.get("To") or m["to"] == q["To"]]
        after = q.get("DateSent>")
        if after:
            since = datetime.fromisoformat(after.replace("Z", "+00:00"))
            if since.tzinfo is None:
                since = since.replace(tzinfo=UTC)
            found = [m for m in found if m["_at"] >= since.timestamp()]
        page = [{k: v for k, v in m.items() if k != "_at"} for m in reversed(found)]  # newest first
        uri = API.format(account=creds.account_sid)
        return JSONResponse(
            {
                "messages": page,
                "page": 0,
                "page_size": max(50, len(page)),
                "start": 0,
                "end": max(0, len(page) - 1),
                "uri": uri,
                "first_page_uri": uri,
                "next_page_uri": None,
                "previous_page_uri": None,
            }
        )

    async def inbound(request: Request) -> Response:
        body = await request.json()
        sender, text = str(body["from"]), str(body.get("body", ""))
        word = text.strip().upper()
        opt = ""
        if word in STOP_WORDS:
            state.unsubscribed.add(sender)
            opt = "STOP"
        elif word in START_WORDS:
            state.unsubscribed.discard(sender)
            opt = "START"
        params = {
            "MessageSid": "SM" + secrets.token_hex(16),
            "AccountSid": creds.account_sid,
            "From": sender,
            "To": creds.sender,
            "Body": text,
            "NumMedia": "0",
        }
        if opt:
            params["OptOutType"] = opt
        if not state.webhook_url:
            return JSONResponse({"delivered": False, "opt_out_type": opt})
        try:
            async with httpx.AsyncClient(timeout=10) as c:
                r = await c.post(
                    state.webhook_url,
                    data=params,
                    headers={"X-Twilio-Signature": signature(creds.auth_token, state.webhook_url, params)},
                )
        except httpx.HTTPError as exc:  # the webhook is down: the opt-out holds here all the same
            return JSONResponse({"delivered": False, "error": str(exc), "opt_out_type": opt})
        return JSONResponse({"delivered": r.is_success, "status": r.status_code, "opt_out_type": opt})

    async def slow(request: Request) -> Response:
        body = await request.json()
        state.slow[str(body["to"])] = float(body.get("seconds", 5))
        return JSONResponse({"to": body["to"], "seconds": state.slow[str(body["to"])]})

    async def messages(request: Request) -> Response:
        to = request.query_params.get("to")
        return JSONResponse(
            [{k: v for k, v in m.items() if k != "_at"} for m in state.messages if not to or m["to"] == to]
        )

    async def health(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    return Starlette(
        routes=[
            Route(API, create, methods=["POST"]),
            Route(API, listing, methods=["GET"]),
            Route("/_sandbox/inbound", inbound, methods=["POST"]),
            Route("/_sandbox/messages", messages, methods=["GET"]),
            Route("/_sandbox/slow", slow, methods=["POST"]),
            Route("/_sandbox/health", health, methods=["GET"]),
        ]
    )
