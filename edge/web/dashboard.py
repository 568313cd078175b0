"""Clinic dashboard: the staff page, "who am I", and the clinic feed bridged to the browser as SSE.

Routes (mounted under ``/clinic`` by :func:`edge.web.app.create_app`; Envoy sends ``/clinic/`` here
with no overall timeout, so a stream may stay open):

* ``GET  /clinic/dashboard``       the page — plain HTML; its CSS and JS are ``/clinic/assets/…``
  (files beside this module in ``static/``, read once when the app is built; no build step).
* ``GET  /clinic/api/me``          ``Authorization: Bearer`` → ``{user_id, email, name, expires_at,
  server_time, clinics: [{clinic_id, name, time_zone}]}``; 401 without / with a bad token, 403 for a
  user who is not clinic staff.  Also sets the feed cookie (below).
* ``POST /clinic/api/logout``      revokes the access token (and ``refresh_token`` from the JSON body,
  which ends the session) and clears the feed cookie.  204.
* ``GET  /clinic/api/feed?clinic_id=…[&after_cursor=N]``  ``text/event-stream``: the bridge of
  ``ClinicFeedService.Subscribe``.  Each event is ``id: <cursor>``, ``event: booking.created``,
  ``data: <the ClinicEvent as JSON, snake_case>``.  Resumes after the ``Last-Event-ID`` header (sent
  by the browser when it reconnects), else after ``after_cursor``, else from 0 (everything; the page
  keeps today and later).  A comment every ``feed_heartbeat_seconds`` keeps idle proxies and the
  browser's connection alive.  Besides bookings the stream may carry ``event: feed.status``
  (``{"state": "reconnecting" | "live"}`` while the edge re-subscribes to notif_worker) and
  ``event: feed.closed`` (``{"status", "reason"}``) right before the edge ends the stream because
  notif_worker refused it.

Authenticating the stream.  ``EventSource`` cannot send an ``Authorization`` header.  Putting the
token in the URL (``?access_token=``) would write it to Envoy's access log, to browser history and
to any log of the full URL, so the feed uses a cookie instead: ``/clinic/api/me`` (called with the
Bearer token by the page before it opens the stream, and again after every token refresh) sets
``petpro_clinic_feed`` = that access token, ``HttpOnly``, ``SameSite=Strict``, ``Path=/clinic/api/feed``
(sent nowhere else), ``Secure`` behind HTTPS, expiring with the token (15 minutes by default).  It is
validated by AuthService like any bearer token (expiry, revocation), on every (re)connect.  A
``Authorization: Bearer`` header is accepted too, for clients that can send one.  The stream ends
when the token expires; the browser reconnects with the renewed cookie and ``Last-Event-ID``.

The bridge authorises before anything is streamed (401/403/400 problem+json otherwise), passes the
caller's token on to ClinicFeed.Subscribe (which checks it again), re-subscribes from the last cursor
by itself when its call ends (deadline, notif_worker restart), cancels the gRPC call as soon as the
browser goes away, and ends every stream when the edge shuts down (:attr:`HttpDeps.closing`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc
from google.protobuf import json_format
from prometheus_client import Counter, Gauge
from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from edge.gateway.status import http_status
from edge.web.deps import HttpDeps
from edge.web.problem import problem
from petpro.authn import Authenticator, Principal, TokenCache
from petpro.errors import Kind
from petpro.upstream import UpstreamError, from_rpc_error
from petpro_api.auth.v1 import auth_pb2
from petpro_api.booking.v1 import booking_pb2
from petpro_api.notification.v1 import clinic_feed_pb2

log = logging.getLogger("edge.dashboard")

STATIC_DIR = Path(__file__).with_name("static")
PAGE = "dashboard.html"
ASSETS = {"dashboard.css": "text/css; charset=utf-8", "dashboard.js": "text/javascript; charset=utf-8"}

FEED_PATH = "/clinic/api/feed"
FEED_COOKIE = "petpro_clinic_feed"
RETRY_MS = 2000  # the browser's reconnect delay (SSE `retry:` field)
# A re-subscribed call that has not failed after this long counts as live.  (Its first response may
# be far away: the server sends nothing, not even headers, until there is an event.)
LIVE_AFTER_SECONDS = 1.0
EVENT_NAMES = {
    clinic_feed_pb2.CLINIC_EVENT_TYPE_BOOKING_CREATED: "booking.created",
    clinic_feed_pb2.CLINIC_EVENT_TYPE_BOOKING_CANCELLED: "booking.cancelled",
    clinic_feed_pb2.CLINIC_EVENT_TYPE_BOOKING_RESCHEDULED: "booking.rescheduled",
    clinic_feed_pb2.CLINIC_EVENT_TYPE_BOOKING_COMPLETED: "booking.completed",
    clinic_feed_pb2.CLINIC_EVENT_TYPE_BOOKING_NO_SHOW: "booking.no_show",
}
# the gRPC call ended without the caller being refused: subscribe again from the last cursor
RESUBSCRIBE = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.CANCELLED,
        grpc.StatusCode.UNKNOWN,
        grpc.StatusCode.INTERNAL,
    }
)
# token validation failures → HTTP status of the problem: a token AuthService cannot read or find is
# a sign-in problem (401), not a bad request; any other failure takes the one status table
# (edge.gateway.status: UNAVAILABLE 503, DEADLINE_EXCEEDED 504, INTERNAL 500, RESOURCE_EXHAUSTED 429)
_TOKEN_HTTP = {
    Kind.UNAUTHENTICATED: 401,
    Kind.PERMISSION_DENIED: 403,
    Kind.INVALID_ARGUMENT: 401,
    Kind.NOT_FOUND: 401,
}

SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; "
        "form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}

FEED_STREAMS = Gauge("edge_clinic_feed_streams", "Clinic feed SSE streams open")
FEED_EVENTS = Counter("edge_clinic_feed_events_total", "Clinic feed events sent to browsers")


# --------------------------------------------------------------------------------------------------
# SSE
# --------------------------------------------------------------------------------------------------


def sse_event(event: clinic_feed_pb2.ClinicEvent) -> ServerSentEvent:
    data = json_format.MessageToDict(
        event, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )
    name = EVENT_NAMES.get(event.type, "clinic.event")
    return ServerSentEvent(
        json.dumps(data, separators=(",", ":")), event=name, id=str(event.cursor), sep="\n"
    )


def sse_message(name: str, data: dict[str, Any]) -> ServerSentEvent:
    return ServerSentEvent(json.dumps(data, separators=(",", ":")), event=name, sep="\n")


def _keep_alive() -> ServerSentEvent:
    return ServerSentEvent(comment="keep-alive", sep="\n")


# --------------------------------------------------------------------------------------------------
# routes
# --------------------------------------------------------------------------------------------------


def _bearer(request: Request) -> str:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


def _https(request: Request) -> bool:
    proto = request.headers.get("x-forwarded-proto") or request.url.scheme
    return proto.split(",")[0].strip().lower() == "https"


def _iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _unauthenticated(request: Request, reason: str, detail: str) -> JSONResponse:
    return problem(
        401, reason, detail, request=request, headers={"WWW-Authenticate": 'Bearer realm="petpro"'}
    )


class Dashboard:
    """The /clinic routes.  Built once per app from :class:`HttpDeps`."""

    def __init__(self, deps: HttpDeps) -> None:
        self.deps = deps
        self.authn = Authenticator(deps.auth, TokenCache(deps.token_cache_seconds)) if deps.auth else None
        self.page = (STATIC_DIR / PAGE).read_bytes()
        self.assets = {name: (STATIC_DIR / name).read_bytes() for name in ASSETS}

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/", self.index, methods=["GET"]),
            Route("/dashboard", self.dashboard, methods=["GET"]),
            Route("/assets/{name}", self.asset, methods=["GET"]),
            Route("/api/me", self.me, methods=["GET"]),
            Route("/api/logout", self.logout, methods=["POST"]),
            Route("/api/feed", self.feed, methods=["GET"]),
        ]

    # ---- page ------------------------------------------------------------------------------------

    async def index(self, request: Request) -> Response:
        return RedirectResponse("/clinic/dashboard", status_code=307)

    async def dashboard(self, request: Request) -> Response:
        return Response(self.page, media_type="text/html; charset=utf-8", headers=SECURITY_HEADERS)

    async def asset(self, request: Request) -> Response:
        name = request.path_params["name"]
        if name not in self.assets:
            return problem(404, "NOT_FOUND", f"no asset {name!r}", request=request)
        return Response(self.assets[name], media_type=ASSETS[name], headers=SECURITY_HEADERS)

    # ---- api -------------------------------------------------------------------------------------

    async def _principal(self, request: Request, token: str) -> Principal | Response:
        if self.authn is None:
            return problem(503, "NOT_CONFIGURED", "the edge has no AuthService connection", request=request)
        if not token:
            return _unauthenticated(request, "TOKEN_MISSING", "sign in: a bearer token is required")
        try:
            return await self.authn.validate(token)
        except UpstreamError as err:
            status = _TOKEN_HTTP.get(err.kind) or http_status(err.kind.name)
            if status == 401:
                return _unauthenticated(
                    request,
                    err.reason if err.kind == Kind.UNAUTHENTICATED else "TOKEN_INVALID",
                    err.message or "the token is not valid",
                )
            if err.kind in (Kind.UNAVAILABLE, Kind.DEADLINE_EXCEEDED):
                return problem(
                    status, err.reason, "the sign-in service is not available; retry", request=request
                )
            return problem(status, err.reason, err.message, request=request)  # INTERNAL: the generic text

    async def me(self, request: Request) -> Response:
        token = _bearer(request)
        principal = await self._principal(request, token)
        if isinstance(principal, Response):
            return principal
        if "CLINIC_STAFF" not in principal.roles or not principal.clinic_ids:
            return problem(403, "NOT_CLINIC_STAFF", "this account is not clinic staff", request=request)
        try:
            found = await asyncio.gather(*(self._clinic(cid) for cid in sorted(principal.clinic_ids)))
        except grpc.aio.AioRpcError as exc:
            err = from_rpc_error(exc)
            log.warning(
                "clinic lookup failed", extra={"fields": {"code": exc.code().name, "reason": err.reason}}
            )
            if err.kind is Kind.INTERNAL:
                return problem(500, "INTERNAL", err.message, request=request)
            return problem(
                503, "UPSTREAM_UNAVAILABLE", "the clinic directory is not available; retry", request=request
            )
        clinics = sorted(
            (c for c in found if c is not None), key=lambda c: (c["name"].lower(), c["clinic_id"])
        )
        body = {
            "user_id": principal.user_id,
            "email": principal.email,
            "name": principal.name,
            "expires_at": _iso(principal.expires_at),
            "server_time": _iso(time.time()),  # lets the page tell bookings made after it opened
            "clinics": clinics,
        }
        response = JSONResponse(body, headers={"Cache-Control": "no-store"})
        response.set_cookie(
            FEED_COOKIE,
            token,
            max_age=max(1, int(principal.expires_at - time.time())),
            path=FEED_PATH,
            httponly=True,
            samesite="strict",
            secure=_https(request),
        )
        return response

    async def _clinic(self, clinic_id: str) -> dict[str, str] | None:
        try:
            resp = await self.deps.booking.GetClinic(
                booking_pb2.GetClinicRequest(clinic_id=clinic_id), timeout=self.deps.rpc_timeout
            )
        except grpc.aio.AioRpcError as exc:
            if exc.code() in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT):
                log.warning("staff bound to an unknown clinic", extra={"fields": {"clinic_id": clinic_id}})
                return None
            raise
        c = resp.clinic
        return {"clinic_id": c.clinic_id, "name": c.name, "time_zone": c.time_zone or "UTC"}

    async def logout(self, request: Request) -> Response:
        tokens = [t for t in (_bearer(request), request.cookies.get(FEED_COOKIE, "")) if t]
        with contextlib.suppress(ValueError, UnicodeDecodeError):
            body = await request.json()
            if isinstance(body, dict) and isinstance(body.get("refresh_token"), str):
                tokens.append(body["refresh_token"])
        response: Response = Response(status_code=204)
        if self.deps.auth is not None:
            for token in dict.fromkeys(tokens):  # revoking is idempotent and needs only the token
                try:
                    await self.deps.auth.RevokeToken(
                        auth_pb2.RevokeTokenRequest(token=token[:8192]), timeout=self.deps.rpc_timeout
                    )
                except grpc.aio.AioRpcError as exc:
                    if exc.code() == grpc.StatusCode.INVALID_ARGUMENT:
                        continue
                    log.warning("token not revoked", extra={"fields": {"code": exc.code().name}})
                    response = problem(
                        503,
                        "UPSTREAM_UNAVAILABLE",
                        "signed out here, but the session could not be revoked; retry",
                        request=request,
                    )
                    break
        response.delete_cookie(
            FEED_COOKIE, path=FEED_PATH, httponly=True, samesite="strict", secure=_https(request)
        )
        return response

    async def feed(self, request: Request) -> Response:
        if self.deps.closing.is_set():
            return problem(
                503,
                "SHUTTING_DOWN",
                "the edge is restarting; reconnect",
                request=request,
                headers={"Retry-After": "2"},
            )
        clinic_id = request.query_params.get("clinic_id", "")
        try:
            clinic_id = str(uuid.UUID(clinic_id))
        except ValueError:
            return problem(
                400,
                "INVALID_ARGUMENT",
                "clinic_id: must be a UUID",
                request=request,
                violations=[{"field": "clinic_id", "description": "must be a UUID", "reason": "string.uuid"}],
            )
        source, raw = (
            ("Last-Event-ID", request.headers["last-event-id"])
            if request.headers.get("last-event-id")
            else ("after_cursor", request.query_params.get("after_cursor") or "0")
        )
        try:
            after = int(raw)
            if after < 0:
                raise ValueError(raw)
        except ValueError:
            return problem(
                400,
                "INVALID_ARGUMENT",
                f"{source}: must be a cursor (an integer >= 0)",
                request=request,
                violations=[
                    {"field": source, "description": "must be an integer >= 0", "reason": "int64.gte"}
                ],
            )
        token = _bearer(request) or request.cookies.get(FEED_COOKIE, "")
        principal = await self._principal(request, token)
        if isinstance(principal, Response):
            return principal
        if not principal.can_read_clinic(clinic_id):
            # as every clinic-scoped call: a non-member learns nothing about the clinic
            return problem(404, "CLINIC_NOT_FOUND", "clinic not found", request=request)
        if self.deps.clinic_feed is None:
            return problem(503, "NOT_CONFIGURED", "the edge has no clinic feed connection", request=request)
        log.info(
            "clinic feed opened",
            extra={"fields": {"clinic_id": clinic_id, "after": after, "user_id": principal.user_id}},
        )
        # sse-starlette: the stream ends (and the bridge's finally cancels the gRPC call) as soon as the
        # browser goes away; a keep-alive comment every feed_heartbeat_seconds while nothing happens
        return EventSourceResponse(
            self._bridge(token, principal, clinic_id, after),
            sep="\n",
            ping=self.deps.feed_heartbeat_seconds,
            ping_message_factory=_keep_alive,
            headers={"Cache-Control": "no-cache, no-store"},
        )

    async def _bridge(
        self, token: str, principal: Principal, clinic_id: str, after: int
    ) -> AsyncIterator[ServerSentEvent]:
        """ClinicFeed.Subscribe → SSE chunks, until the client leaves, the token expires, the caller is
        refused, or the edge shuts down.  Re-subscribes from the last cursor when a call ends."""
        deps = self.deps
        assert deps.clinic_feed is not None
        loop = asyncio.get_running_loop()
        ends_at = loop.time() + (principal.expires_at - time.time())
        closing = asyncio.ensure_future(deps.closing.wait())
        last, failures = after, 0
        FEED_STREAMS.inc()
        try:
            yield ServerSentEvent(comment="connected", retry=RETRY_MS, sep="\n")
            while loop.time() < ends_at:  # then the browser reconnects with its renewed cookie
                call = deps.clinic_feed.Subscribe(
                    clinic_feed_pb2.SubscribeRequest(clinic_id=clinic_id, after_cursor=last),
                    metadata=(("authorization", f"Bearer {token}"),),
                    timeout=deps.feed_call_seconds,
                )
                read: asyncio.Future[Any] | None = None
                try:
                    while True:
                        if read is None:
                            read = asyncio.ensure_future(call.read())
                        wait = min(deps.feed_heartbeat_seconds, ends_at - loop.time())
                        if wait <= 0:
                            return  # the token expired
                        if failures:  # after a failure: live again once the new call holds a moment
                            wait = min(wait, LIVE_AFTER_SECONDS)
                        done, _ = await asyncio.wait(
                            {read, closing}, timeout=wait, return_when=asyncio.FIRST_COMPLETED
                        )
                        if closing in done:
                            return
                        if read not in done:  # quiet (the response's pings keep the connection alive)
                            if failures:
                                failures = 0
                                yield sse_message("feed.status", {"state": "live"})
                            continue
                        message, read = read.result(), None
                        if message is grpc.aio.EOF:
                            raise _Ended()
                        if failures:
                            failures = 0
                            yield sse_message("feed.status", {"state": "live"})
                        last = message.event.cursor
                        FEED_EVENTS.inc()
                        yield sse_event(message.event)
                except (grpc.aio.AioRpcError, _Ended) as exc:
                    code = exc.code() if isinstance(exc, grpc.aio.AioRpcError) else grpc.StatusCode.OK
                    if isinstance(exc, grpc.aio.AioRpcError) and code not in RESUBSCRIBE:
                        err = from_rpc_error(exc)
                        log.info(
                            "clinic feed refused", extra={"fields": {"code": code.name, "reason": err.reason}}
                        )
                        status = http_status(code)
                        yield sse_message("feed.closed", {"status": status, "reason": err.reason})
                        return
                    if code == grpc.StatusCode.DEADLINE_EXCEEDED and not failures:
                        continue  # the call's deadline: a routine re-subscribe, nothing to tell
                    failures += 1
                    if failures == 1:
                        log.warning(
                            "clinic feed interrupted; re-subscribing", extra={"fields": {"code": code.name}}
                        )
                        yield sse_message("feed.status", {"state": "reconnecting"})
                    done, _ = await asyncio.wait({closing}, timeout=min(0.25 * 2 ** (failures - 1), 5.0))
                    if done:
                        return
                finally:
                    call.cancel()
                    if read is not None:
                        read.cancel()
                        read.add_done_callback(_retrieve)
        finally:
            closing.cancel()
            FEED_STREAMS.dec()
            log.info("clinic feed closed", extra={"fields": {"clinic_id": clinic_id, "last": last}})


class _Ended(Exception):
    """The server ended the stream without an error (e.g. its shutdown)."""


def _retrieve(fut: asyncio.Future[Any]) -> None:
    if not fut.cancelled():
        fut.exception()
