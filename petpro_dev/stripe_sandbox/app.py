"""The HTTP face of the sandbox: Stripe's v1 routes, the hosted pay page, and ``/_sandbox/`` controls."""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hashlib
import json
import logging
import secrets
import signal
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from typing import Any, cast

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from petpro_dev.stripe_sandbox import page
from petpro_dev.stripe_sandbox.config import SandboxConfig
from petpro_dev.stripe_sandbox.engine import Card, RequestContext, Sandbox, new_id
from petpro_dev.stripe_sandbox.errors import StripeError
from petpro_dev.stripe_sandbox.forms import Params, decode_pairs, parse_urlencoded
from petpro_dev.stripe_sandbox.signing import SECRET_PREFIX, load_webhook_secret
from petpro_dev.stripe_sandbox.store import MUTED, PENDING, IdempotencyRecord, Obj, Store, StoredEvent
from petpro_dev.stripe_sandbox.webhooks import WebhookDispatcher

log = logging.getLogger("petpro.stripe_sandbox")

IDEMPOTENCY_TTL = 24 * 3600  # Stripe keeps keys for at least 24 hours
TEST_KEY_PREFIXES = ("sk_test_", "rk_test_")


class Runtime:
    """Everything one running sandbox holds; created by the app's lifespan, closed on shutdown."""

    def __init__(self, config: SandboxConfig) -> None:
        self.config = config
        self.store = Store(config.db_path)
        if config.webhook_secret:
            self.webhook_secret = config.webhook_secret
        elif config.home is not None:
            self.webhook_secret = load_webhook_secret(config.home)
        else:
            self.webhook_secret = SECRET_PREFIX + secrets.token_hex(32)
        self.client = httpx.AsyncClient(follow_redirects=False)  # Stripe counts a 3xx as a failed delivery
        self.dispatcher: WebhookDispatcher | None = None
        if config.webhook_url:
            self.dispatcher = WebhookDispatcher(
                self.store,
                url=config.webhook_url,
                secret=self.webhook_secret,
                policy=config.retry,
                client=self.client,
            )
        self.engine = Sandbox(self.store, config, on_event=self._on_event)
        self.engine.on_doomed_refund = self._fail_later
        self.refund_failure_delay = 0.5  # s between accepting a doomed refund and its failure
        self._sweeper: asyncio.Task[None] | None = None
        # sessions whose webhooks are switched off (POST /_sandbox/sessions/{id}/webhooks): their
        # events are recorded with delivery "muted" and never sent, as if every delivery were lost
        self.muted: set[str] = set()

    def _on_event(self, event: StoredEvent) -> None:
        if event.order_key in self.muted:
            self.store.set_delivery(event.id, MUTED)
            return
        if self.dispatcher is not None and event.delivery == PENDING:
            self.dispatcher.enqueue(event)

    def _fail_later(self, refund_id: str) -> None:
        """A refund accepted under ``/_sandbox/refunds/async-failures``: the issuer rejects it a moment
        later (``refund.updated`` and ``refund.failed``, as Stripe reports it)."""
        asyncio.get_running_loop().call_later(self.refund_failure_delay, self._fail_now, refund_id)

    def _fail_now(self, refund_id: str) -> None:
        try:
            self.engine.settle_refund(
                refund_id,
                "failed",
                RequestContext(new_id("req_", 14), None),
                failure_reason=self.engine.refund_async_failure_reason,
            )
        except StripeError as exc:  # settled by hand in between
            log.info("doomed refund %s not failed: %s", refund_id, exc.message)

    async def start(self) -> None:
        if self.dispatcher is not None:
            resumed = self.dispatcher.resume_pending()
            if resumed:
                log.info("resuming %d undelivered webhook events", resumed)
        self._sweeper = asyncio.get_running_loop().create_task(
            self._sweep(), name="stripe sandbox expiry sweep"
        )

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(self.config.sweep_interval)
            try:
                self.engine.expire_due()
                self.store.prune_idempotency(time.time() - IDEMPOTENCY_TTL)
            except Exception:
                log.exception("expiry sweep failed")

    async def aclose(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
        if self.dispatcher is not None:
            await self.dispatcher.aclose()
        await self.client.aclose()
        self.store.close()


def runtime_of(request: Request) -> Runtime:
    return cast(Runtime, request.app.state.runtime)


# -- responses ---------------------------------------------------------------------------------------


def stripe_json(
    status: int, body: Obj, request_id: str, extra_headers: dict[str, str] | None = None
) -> Response:
    headers = {"Request-Id": request_id, **(extra_headers or {})}
    return Response(
        json.dumps(body, indent=2), status_code=status, media_type="application/json", headers=headers
    )


def wants_json(request: Request) -> bool:
    """JSON for ``Accept: application/json`` or a JSON body; HTML for the browser's form post."""
    accept = request.headers.get("accept", "")
    if "text/html" in accept:
        return False
    return "application/json" in accept or "application/json" in request.headers.get("content-type", "")


# -- /v1 plumbing ------------------------------------------------------------------------------------


def _redact(key: str) -> str:
    return key[:8] + "*" * max(len(key) - 12, 0) + key[-4:] if len(key) > 12 else key


def check_api_key(request: Request) -> None:
    auth = request.headers.get("authorization", "")
    scheme, _, value = auth.partition(" ")
    key = ""
    if scheme.lower() == "bearer":
        key = value.strip()
    elif scheme.lower() == "basic":
        try:
            key = base64.b64decode(value.strip()).decode().partition(":")[0]
        except (binascii.Error, UnicodeDecodeError):
            key = ""
    if not key:
        raise StripeError(
            401,
            "You did not provide an API key. You need to provide your API key in the Authorization header, "
            "using Bearer auth (e.g. 'Authorization: Bearer YOUR_SECRET_KEY'). See "
            "https://stripe.com/docs/api#authentication for details, or we can help at https://support.stripe.com/.",
        )
    if not key.startswith(TEST_KEY_PREFIXES):
        raise StripeError(
            401, f"Invalid API Key provided: {_redact(key)} (the sandbox takes test mode keys, sk_test_…)"
        )


async def read_params(request: Request) -> dict[str, Any]:
    pairs = parse_urlencoded(request.url.query)
    if request.method == "POST":
        body = await request.body()
        ctype = request.headers.get("content-type", "")
        if body:
            if "application/x-www-form-urlencoded" not in ctype and ctype:
                raise StripeError(
                    400,
                    "Invalid request: the v1 API takes application/x-www-form-urlencoded "
                    f"bodies, not {ctype}.",
                )
            pairs += parse_urlencoded(body)
    return decode_pairs(pairs)


ApiHandler = Callable[[Runtime, Request, Params, RequestContext], Obj]


def api(handler: ApiHandler) -> Callable[[Request], Awaitable[Response]]:
    """A Stripe v1 endpoint: API key, form parameters, Idempotency-Key (POST), errors as Stripe words them."""

    async def endpoint(request: Request) -> Response:
        rt = runtime_of(request)
        request_id = new_id("req_", 14)
        version = request.headers.get("stripe-version") or rt.config.api_version
        headers = {"Stripe-Version": version}
        key = request.headers.get("idempotency-key") if request.method == "POST" else None
        if key is not None:
            headers["Idempotency-Key"] = key
        try:
            check_api_key(request)
            params = await read_params(request)
            if key is None:
                obj = handler(rt, request, Params(params), RequestContext(request_id, None))
                return stripe_json(200, obj, request_id, headers)
            return _idempotent(rt, request, handler, params, key, request_id, headers)
        except StripeError as exc:
            return stripe_json(exc.status, exc.body(), request_id, headers)
        except Exception:  # a sandbox bug: answer like Stripe's 500 so the SDK raises APIError
            log.exception("%s %s failed", request.method, request.url.path)
            err = StripeError(
                500, "An unknown error occurred in the Stripe sandbox (see its log).", type="api_error"
            )
            return stripe_json(500, err.body(), request_id, headers)

    return endpoint


def _idempotent(
    rt: Runtime,
    request: Request,
    handler: ApiHandler,
    params: dict[str, Any],
    key: str,
    request_id: str,
    headers: dict[str, str],
) -> Response:
    """Same key + same request → the first answer again; same key + another request → idempotency_error.

    Runs without awaiting, so two requests with one key cannot interleave on the event loop."""
    if len(key) > 255:
        raise StripeError(
            400, "Idempotency keys can be at most 255 characters long.", type="idempotency_error"
        )
    path = request.url.path
    fingerprint = hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()
    record = rt.store.idempotency(key)
    if record is not None and record.created < time.time() - IDEMPOTENCY_TTL:
        record = None
    if record is not None:
        if (record.method, record.path) != (request.method, path):
            raise StripeError(
                400,
                "Keys for idempotent requests can only be used for the same endpoint they were first used for "
                f"('{record.method} {record.path}' vs '{request.method} {path}'). Try using a key other than "
                f"'{key}' if you meant to execute a different request.",
                type="idempotency_error",
            )
        if record.fingerprint != fingerprint:
            raise StripeError(
                400,
                "Keys for idempotent requests can only be used with the same parameters they were first used "
                f"with. Try using a key other than '{key}' if you meant to execute a different request.",
                type="idempotency_error",
            )
        replay = {
            **headers,
            "Request-Id": request_id,
            "Idempotent-Replayed": "true",
            "Original-Request": record.request_id,
        }
        return Response(record.body, status_code=record.status, media_type="application/json", headers=replay)
    try:
        obj = handler(rt, request, Params(params), RequestContext(request_id, key))
        status, body = 200, obj
    except StripeError as exc:
        if not exc.replayable:
            raise
        status, body = exc.status, exc.body()
    text = json.dumps(body, indent=2)
    rt.store.save_idempotency(
        IdempotencyRecord(key, request.method, path, fingerprint, status, text, request_id, time.time())
    )
    return Response(
        text, status_code=status, media_type="application/json", headers={**headers, "Request-Id": request_id}
    )


def _id(request: Request) -> str:
    return str(request.path_params["id"])


def _expand_only(p: Params) -> list[str]:
    p.check_known({"expand"})
    return p.strings("expand")


# -- /v1 handlers ------------------------------------------------------------------------------------


def create_session(rt: Runtime, request: Request, p: Params, ctx: RequestContext) -> Obj:
    return rt.engine.create_session(p, ctx)


def list_sessions(rt: Runtime, request: Request, p: Params, ctx: RequestContext) -> Obj:
    return rt.engine.list_sessions(p)


def retrieve_session(rt: Runtime, request: Request, p: Params, ctx: RequestContext) -> Obj:
    return rt.engine.session(_id(request), _expand_only(p))


def session_line_items(rt: Runtime, request: Request, p: Params, ctx: RequestContext) -> Obj:
    p.check_known({"limit", "starting_after", "ending_before", "expand"})
    return rt.engine.line_items(_id(request), limit=min(p.integer("limit", minimum=1) or 10, 100))


def expire_session(rt: Runtime, request: Request, p: Params, ctx: RequestContext) -> Obj:
    expand = _expand_only(p)
    return rt.engine.expand(rt.engine.expire_session(_id(request), ctx), expand)


def retrieve_payment_intent(rt: Runtime, request: Request, p: Params, ctx: RequestContext) -> Obj:
    p.check_known({"expand", "client_secret"})
    return rt.engine.payment_intent(_id(request), p.strings("expand"))


def retrieve_charge(rt: Runtime, request: Request, p: Params, ctx: RequestContext) -> Obj:
    return rt.engine.charge(_id(request), _expand_only(p))


def create_refund(rt: Runtime, request: Request, p: Params, ctx: RequestContext) -> Obj:
    return rt.engine.create_refund(p, ctx)


def retrieve_refund(rt: Runtime, request: Request, p: Params, ctx: RequestContext) -> Obj:
    return rt.engine.refund(_id(request), _expand_only(p))


def list_refunds(rt: Runtime, request: Request, p: Params, ctx: RequestContext) -> Obj:
    return rt.engine.list_refunds(p)


def retrieve_event(rt: Runtime, request: Request, p: Params, ctx: RequestContext) -> Obj:
    _expand_only(p)
    return rt.engine.event(_id(request))


def list_events(rt: Runtime, request: Request, p: Params, ctx: RequestContext) -> Obj:
    return rt.engine.list_events(p)


# -- hosted page -------------------------------------------------------------------------------------


async def read_fields(request: Request) -> dict[str, Any]:
    """The pay form's fields: urlencoded (the page) or a JSON object (a test or script)."""
    body = await request.body()
    if not body:
        return {}
    if "application/json" in request.headers.get("content-type", ""):
        try:
            data = json.loads(body)
        except ValueError:
            raise StripeError(400, "Invalid JSON body.") from None
        if not isinstance(data, dict):
            raise StripeError(400, "The JSON body must be an object.")
        return data
    return dict(parse_urlencoded(body))


async def pay_page(request: Request) -> Response:
    rt = runtime_of(request)
    try:
        session = rt.engine.session(_id(request))
    except StripeError:
        return HTMLResponse(page.closed_page(None, "This checkout link is not valid."), status_code=404)
    if session["status"] == "complete":
        return HTMLResponse(page.paid_page(session))
    if session["status"] == "expired":
        return HTMLResponse(page.closed_page(session, "This checkout session has expired."), status_code=410)
    items = rt.engine.line_items(session["id"], limit=100)["data"]
    return HTMLResponse(page.checkout_page(session, items))


def _pay_json(result_session: Obj, payment_intent: Obj | None) -> Obj:
    return {
        "session": result_session,
        "payment_intent": payment_intent,
        "success_url": page.success_url(result_session),
    }


async def pay_submit(request: Request) -> Response:
    """The page's Pay button (urlencoded form → HTML) or a direct call (``Accept: application/json``)."""
    return await _pay(request, as_json=wants_json(request))


async def _pay(request: Request, *, as_json: bool) -> Response:
    rt = runtime_of(request)
    session_id = _id(request)
    card_number = page.DEFAULT_CARD
    try:
        fields = await read_fields(request)
        card = Card.parse(fields)
        card_number = card.number
        result = rt.engine.pay(session_id, card)
    except StripeError as exc:
        if as_json:
            return JSONResponse(exc.body(), status_code=exc.status)
        session = rt.store.get(session_id, "checkout.session")
        if exc.status == 402 and session is not None:  # refused before reaching the bank: the form again
            items = rt.engine.line_items(session_id, limit=100)["data"]
            return HTMLResponse(
                page.checkout_page(session, items, error=exc.message, card_number=card_number),
                status_code=402,
            )
        if session is None:
            return HTMLResponse(page.closed_page(None, "This checkout link is not valid."), status_code=404)
        return HTMLResponse(page.closed_page(session, exc.message), status_code=exc.status)
    if result.error is not None:
        if as_json:
            body = result.error.body()
            body["session"], body["payment_intent"] = result.session, result.payment_intent
            return JSONResponse(body, status_code=402)
        items = rt.engine.line_items(session_id, limit=100)["data"]
        return HTMLResponse(
            page.checkout_page(result.session, items, error=result.error.message, card_number=card_number),
            status_code=402,
        )
    if as_json:
        return JSONResponse(_pay_json(result.session, result.payment_intent))
    return HTMLResponse(page.paid_page(result.session))


# -- /_sandbox ---------------------------------------------------------------------------------------


async def sandbox_pay(request: Request) -> Response:
    """Same as the Pay button, always JSON: ``{"card_number": …}`` optional (default: the test card that pays)."""
    return await _pay(request, as_json=True)


async def sandbox_webhooks(request: Request) -> Response:
    """``{"enabled": false}`` switches webhooks off for one Checkout Session (its later events are
    recorded, never delivered: the provider "lost" them); ``{"enabled": true}`` switches them back on
    for events after that."""
    rt = runtime_of(request)
    session_id = _id(request)
    if rt.store.get(session_id, "checkout.session") is None:
        return JSONResponse(
            StripeError(404, f"No such checkout.session: '{session_id}'", code="resource_missing").body(),
            status_code=404,
        )
    try:
        enabled = (await request.json())["enabled"]
        if not isinstance(enabled, bool):
            raise TypeError
    except (ValueError, KeyError, TypeError):
        return JSONResponse(StripeError(400, 'expected {"enabled": true|false}').body(), status_code=400)
    (rt.muted.discard if enabled else rt.muted.add)(session_id)
    return JSONResponse({"session": session_id, "webhooks": enabled})


async def sandbox_events(request: Request) -> Response:
    """Events (oldest first) with their delivery attempts; ``?session=cs_…``, ``?type=…`` filter."""
    rt = runtime_of(request)
    session = request.query_params.get("session")
    types = request.query_params.getlist("type") or None
    events, _ = rt.store.events(order_key=session, types=types, limit=10_000, oldest_first=True)
    data = [
        {
            "id": e.id,
            "type": e.type,
            "created": e.created,
            "session": e.order_key,
            "delivery": e.delivery,
            "attempts": [a.as_dict() for a in rt.store.attempts(e.id)],
            "event": e.as_object(),
        }
        for e in events
    ]
    return JSONResponse({"object": "list", "data": data, "webhook_url": rt.config.webhook_url})


async def sandbox_resend(request: Request) -> Response:
    """Deliver an event again (same id, same payload, fresh signature), with retries like the first time."""
    rt = runtime_of(request)
    event = rt.store.event(_id(request))
    if event is None:
        return JSONResponse(
            StripeError(404, f"No such event: '{_id(request)}'", code="resource_missing").body(),
            status_code=404,
        )
    if rt.dispatcher is None:
        return JSONResponse(
            StripeError(409, "The sandbox has no webhook URL to deliver to.").body(), status_code=409
        )
    rt.dispatcher.enqueue(event)
    return JSONResponse({"id": event.id, "type": event.type, "delivery": PENDING}, status_code=202)


async def sandbox_refund_failures(request: Request) -> Response:
    """Error mode: ``{"count": N}`` makes the next N refund creations fail with Stripe's 500 api_error."""
    rt = runtime_of(request)
    body = await request.json()
    count = body.get("count") if isinstance(body, dict) else None
    if not isinstance(count, int) or count < 0:
        return JSONResponse(
            StripeError(400, "`count` must be a non-negative integer.").body(), status_code=400
        )
    rt.engine.refund_failures = count
    return JSONResponse({"refund_failures": count})


REFUND_FAILURE_REASONS = (
    "lost_or_stolen_card",
    "expired_or_canceled_card",
    "charge_for_pending_refund_disputed",
    "insufficient_funds",
    "declined",
    "merchant_request",
    "unknown",
)


async def sandbox_refund_async_failures(request: Request) -> Response:
    """``{"count": N, "after_seconds": 0.5, "failure_reason": "expired_or_canceled_card"}``: the next N
    refunds are accepted as ``pending`` (200, as Stripe does) and fail ``after_seconds`` later with
    ``refund.updated`` (status ``failed``) and ``refund.failed``, the amount back on the charge."""
    rt = runtime_of(request)
    body = await request.json()
    body = body if isinstance(body, dict) else {}
    count, after = body.get("count"), body.get("after_seconds", 0.5)
    reason = body.get("failure_reason", "expired_or_canceled_card")
    if not isinstance(count, int) or count < 0:
        return JSONResponse(
            StripeError(400, "`count` must be a non-negative integer.").body(), status_code=400
        )
    if not isinstance(after, int | float) or not 0 <= after <= 3600:
        return JSONResponse(
            StripeError(400, "`after_seconds` must be within 0..3600.").body(), status_code=400
        )
    if reason not in REFUND_FAILURE_REASONS:
        return JSONResponse(
            StripeError(400, f"`failure_reason` must be one of {', '.join(REFUND_FAILURE_REASONS)}.").body(),
            status_code=400,
        )
    rt.engine.refund_async_failures = count
    rt.engine.refund_async_failure_reason = reason
    rt.refund_failure_delay = float(after)
    return JSONResponse({"refund_async_failures": count, "after_seconds": after, "failure_reason": reason})


async def sandbox_refund_mode(request: Request) -> Response:
    """``{"status": "pending"}``: new refunds stay pending until settled; ``"succeeded"`` (default) at once."""
    rt = runtime_of(request)
    body = await request.json()
    status = body.get("status") if isinstance(body, dict) else None
    if status not in ("succeeded", "pending"):
        return JSONResponse(
            StripeError(400, "`status` must be succeeded or pending.").body(), status_code=400
        )
    rt.engine.refund_initial_status = status
    return JSONResponse({"refund_initial_status": status})


async def sandbox_refund_settle(request: Request) -> Response:
    """``{"status": "succeeded"|"failed"|"canceled"}`` for a pending refund: emits refund.updated."""
    rt = runtime_of(request)
    body = await request.json()
    try:
        refund = rt.engine.settle_refund(
            _id(request), str((body or {}).get("status", "")), RequestContext(new_id("req_", 14), None)
        )
    except StripeError as exc:
        return JSONResponse(exc.body(), status_code=exc.status)
    return JSONResponse(refund)


async def sandbox_health(request: Request) -> Response:
    rt = runtime_of(request)
    return JSONResponse(
        {
            "status": "ok",
            "webhook_url": rt.config.webhook_url,
            "public_url": rt.config.base_url,
            "pending_deliveries": len(rt.store.pending_events()),
        }
    )


# -- app ---------------------------------------------------------------------------------------------


async def not_found(request: Request, exc: Exception) -> Response:
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    if request.url.path.startswith("/v1/"):
        request_id = new_id("req_", 14)
        err = StripeError(
            404,
            f"Unrecognized request URL ({request.method}: {request.url.path}). Please see "
            "https://stripe.com/docs or we can help at https://support.stripe.com/.",
        )
        return stripe_json(404, err.body(), request_id)
    return JSONResponse({"error": {"message": "Not Found"}}, status_code=status)


def create_app(config: SandboxConfig) -> Starlette:
    """The sandbox as an ASGI app; its state is opened on startup (lifespan) and closed on shutdown."""

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        runtime = Runtime(config)
        app.state.runtime = runtime
        try:
            await runtime.start()
            yield
        finally:
            await runtime.aclose()

    routes = [
        Route("/v1/checkout/sessions", api(create_session), methods=["POST"]),
        Route("/v1/checkout/sessions", api(list_sessions), methods=["GET"]),
        Route("/v1/checkout/sessions/{id}", api(retrieve_session), methods=["GET"]),
        Route("/v1/checkout/sessions/{id}/line_items", api(session_line_items), methods=["GET"]),
        Route("/v1/checkout/sessions/{id}/expire", api(expire_session), methods=["POST"]),
        Route("/v1/payment_intents/{id}", api(retrieve_payment_intent), methods=["GET"]),
        Route("/v1/charges/{id}", api(retrieve_charge), methods=["GET"]),
        Route("/v1/refunds", api(create_refund), methods=["POST"]),
        Route("/v1/refunds", api(list_refunds), methods=["GET"]),
        Route("/v1/refunds/{id}", api(retrieve_refund), methods=["GET"]),
        Route("/v1/events", api(list_events), methods=["GET"]),
        Route("/v1/events/{id}", api(retrieve_event), methods=["GET"]),
        Route("/pay/{id}", pay_page, methods=["GET"]),
        Route("/pay/{id}", pay_submit, methods=["POST"]),
        Route("/_sandbox/sessions/{id}/pay", sandbox_pay, methods=["POST"]),
        Route("/_sandbox/sessions/{id}/webhooks", sandbox_webhooks, methods=["POST"]),
        Route("/_sandbox/events", sandbox_events, methods=["GET"]),
        Route("/_sandbox/events/{id}/resend", sandbox_resend, methods=["POST"]),
        Route("/_sandbox/refunds/failures", sandbox_refund_failures, methods=["POST"]),
        Route("/_sandbox/refunds/mode", sandbox_refund_mode, methods=["POST"]),
        Route("/_sandbox/refunds/async-failures", sandbox_refund_async_failures, methods=["POST"]),
        Route("/_sandbox/refunds/{id}/settle", sandbox_refund_settle, methods=["POST"]),
        Route("/_sandbox/health", sandbox_health, methods=["GET"]),
        Route("/healthz", sandbox_health, methods=["GET"]),
    ]
    return Starlette(routes=routes, lifespan=lifespan, exception_handlers={404: not_found, 405: not_found})


# -- running it --------------------------------------------------------------------------------------


class _EmbeddedServer(uvicorn.Server):
    """A uvicorn server that leaves signal handling to its owner (uvicorn's own re-raises the signal after
    shutting down, and must not take over a test runner's handlers)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def _uvicorn_config(app: Starlette, config: SandboxConfig, access_log: bool) -> uvicorn.Config:
    return uvicorn.Config(
        app,
        host=config.host,
        port=config.port,
        lifespan="on",
        log_config=None,
        access_log=access_log,
        timeout_graceful_shutdown=5,
        server_header=False,
    )


async def serve(config: SandboxConfig, *, access_log: bool = True) -> None:
    """Run until SIGTERM/SIGINT, then shut down cleanly (exit status 0): ``python -m
    petpro_dev.stripe_sandbox``.  Undelivered events stay pending for the next start."""
    server = _EmbeddedServer(_uvicorn_config(create_app(config), config, access_log))
    loop = asyncio.get_running_loop()

    def stop() -> None:
        if server.should_exit:  # a second signal: do not wait for open connections
            server.force_exit = True
        server.should_exit = True

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop)
    log.info("stripe sandbox on %s, webhooks to %s", config.base_url, config.webhook_url or "(none)")
    try:
        await server.serve()
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
    if not server.started:
        raise SystemExit(f"stripe sandbox could not start on {config.host}:{config.port}")


@dataclass(frozen=True)
class RunningSandbox:
    """A sandbox started by :func:`running_sandbox`: its URL (the SDK's ``api`` base) and its runtime."""

    url: str
    config: SandboxConfig
    app: Starlette

    @property
    def runtime(self) -> Runtime:
        return cast(Runtime, self.app.state.runtime)

    @property
    def webhook_secret(self) -> str:
        return self.runtime.webhook_secret

    async def drain(self) -> None:
        """Wait until every webhook delivery under way succeeded or gave up."""
        if self.runtime.dispatcher is not None:
            await self.runtime.dispatcher.drain()


@asynccontextmanager
async def running_sandbox(
    config: SandboxConfig, *, startup_timeout: float = 10.0
) -> AsyncIterator[RunningSandbox]:
    """Serve a sandbox inside the current event loop (``config.port`` 0 → a free port), e.g. in tests.

    Call the SDK's async methods (``create_async`` …) from the same loop: a synchronous SDK call would
    block the loop the sandbox answers on (use ``asyncio.to_thread`` for those)."""
    # proto IPPROTO_TCP, or asyncio leaves Nagle on for accepted connections (+40 ms per keep-alive request)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((config.host, config.port))
    config = replace(config, port=sock.getsockname()[1])
    app = create_app(config)
    server = _EmbeddedServer(_uvicorn_config(app, config, access_log=False))
    task = asyncio.get_running_loop().create_task(server.serve(sockets=[sock]), name="stripe sandbox")
    try:
        deadline = time.monotonic() + startup_timeout
        while not server.started:
            if task.done():
                task.result()  # raises what stopped it
                raise RuntimeError("stripe sandbox stopped during startup")
            if time.monotonic() > deadline:
                raise TimeoutError("stripe sandbox did not start")
            await asyncio.sleep(0.01)
        yield RunningSandbox(url=f"http://{config.host}:{config.port}", config=config, app=app)
    finally:
        server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await task
        sock.close()
