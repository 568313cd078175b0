"""The edge's small HTTP app behind Envoy: the routes that are not gRPC transcoding.

* ``POST /webhooks/stripe``  raw body + ``Stripe-Signature`` → PaymentService.HandleWebhook (verifies,
  records, dedupes) → for a succeeded payment BookingService.ConfirmBooking(lock_id = order_ref); if
  the slot is gone (FAILED_PRECONDITION SLOT_NO_LONGER_AVAILABLE / RESERVATION_CLOSED) the payment
  is refunded.  2xx only once the booking is committed (or the refund done), so the sender retries
  everything else: bad signature → 400, anything transient → 503.
* ``GET /openapi.json`` and ``GET /docs``: generated once at start-up from ``gen/petpro_api/petpro.binpb``.
* ``GET /healthz``, ``GET /metrics`` (Prometheus, the process' default registry).
* ``/clinic/…``: the clinic dashboard — page, ``/clinic/api/me`` and the live feed as Server-Sent
  Events (:mod:`edge.dashboard`).

Every error body is ``application/problem+json`` with a ``reason`` (the same shape the Lua filter
gives transcoded errors).  The stubs come in through :class:`HttpDeps`, so tests pass real stubs
to fake servers; :func:`serve_http` runs the app with uvicorn inside the caller's event loop,
without touching signal handlers (the edge process' gRPC bootstrap owns SIGTERM).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import uuid
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import grpc
import uvicorn
from google.rpc import error_details_pb2, status_pb2
from prometheus_client import CONTENT_TYPE_LATEST, Counter, generate_latest
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from edge.openapi import build_openapi, default_descriptor_path, docs_html
from petpro import grpc_client, telemetry
from petpro_api.auth.v1 import auth_pb2_grpc
from petpro_api.booking.v1 import booking_pb2, booking_pb2_grpc
from petpro_api.notification.v1 import clinic_feed_pb2_grpc
from petpro_api.payment.v1 import payment_pb2, payment_pb2_grpc

log = logging.getLogger("edge.http")

ERROR_DOMAIN = "petpro.dev"
PROBLEM_TYPE_BASE = "https://petpro.dev/problems/"
PROBLEM_CONTENT_TYPE = "application/problem+json"

# ConfirmBooking failures that mean "this payment will never get its booking": refund it.
REFUND_REASONS = frozenset({"SLOT_NO_LONGER_AVAILABLE", "RESERVATION_CLOSED", "SLOT_UNAVAILABLE"})
REFUND_REASON_TEXT = "slot_unavailable"

WEBHOOKS = Counter("edge_webhooks_total", "Stripe webhook deliveries by outcome", ["outcome"])

_TITLES = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    409: "Conflict",
    413: "Content Too Large",
    429: "Too Many Requests",
    500: "Internal Server Error",
    501: "Not Implemented",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}

# Methods the edge HTTP app calls that are safe to retry on UNAVAILABLE (all three are idempotent).
IDEMPOTENT_METHODS: tuple[str, ...] = (
    "petpro.payment.v1.PaymentService/HandleWebhook",
    "petpro.payment.v1.PaymentService/RefundPayment",
    "petpro.booking.v1.BookingService/ConfirmBooking",
)


@dataclass
class HttpDeps:
    """What the HTTP app talks to.  ``descriptor_set``: FileDescriptorSet bytes for the OpenAPI
    document (``gen/petpro_api/petpro.binpb`` when None).  ``rpc_timeout``: deadline of each outgoing RPC.

    The clinic dashboard needs ``auth`` (token validation) and ``clinic_feed`` (its live stream;
    each Subscribe call lasts at most ``feed_call_seconds``, then it is renewed from the last cursor);
    without them its API answers 503.  ``closing`` is set when the edge shuts down: open streams end."""

    payment: payment_pb2_grpc.PaymentServiceStub
    booking: booking_pb2_grpc.BookingServiceStub
    descriptor_set: bytes | None = None
    rpc_timeout: float = 5.0
    channels: list[grpc.aio.Channel] = field(default_factory=list)
    auth: auth_pb2_grpc.AuthServiceStub | None = None
    clinic_feed: clinic_feed_pb2_grpc.ClinicFeedServiceStub | None = None
    token_cache_seconds: float = 5.0
    feed_heartbeat_seconds: float = 15.0
    feed_call_seconds: float = 3600.0
    closing: asyncio.Event = field(default_factory=asyncio.Event)

    @classmethod
    def connect(cls, payment_addr: str, booking_addr: str, **kwargs: Any) -> HttpDeps:
        """Channels (deadlines, request-id/trace propagation, retries of the idempotent methods)
        to PaymentService and BookingService.  Close them with :meth:`aclose`."""
        payment_ch = grpc_client.channel(payment_addr, idempotent=IDEMPOTENT_METHODS)
        booking_ch = grpc_client.channel(booking_addr, idempotent=IDEMPOTENT_METHODS)
        return cls(
            payment=payment_pb2_grpc.PaymentServiceStub(payment_ch),
            booking=booking_pb2_grpc.BookingServiceStub(booking_ch),
            channels=[payment_ch, booking_ch],
            **kwargs,
        )

    async def aclose(self) -> None:
        for ch in self.channels:
            await ch.close()


# --------------------------------------------------------------------------------------------------
# problem+json
# --------------------------------------------------------------------------------------------------


def problem(
    status: int,
    reason: str,
    detail: str,
    *,
    request: Request | None = None,
    domain: str = ERROR_DOMAIN,
    violations: Sequence[dict[str, str]] = (),
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body = {
        "type": PROBLEM_TYPE_BASE + reason.lower().replace("_", "-"),
        "title": _TITLES.get(status, "Error"),
        "status": status,
        "detail": detail,
        "instance": request.url.path if request is not None else "",
        "reason": reason,
        "domain": domain or ERROR_DOMAIN,
        "violations": list(violations),
        "request_id": telemetry.request_id_var.get(),
    }
    return JSONResponse(body, status_code=status, media_type=PROBLEM_CONTENT_TYPE, headers=headers)


@dataclass(frozen=True)
class RpcError:
    """The interesting parts of a failed RPC's google.rpc.Status."""

    code: grpc.StatusCode
    message: str
    reason: str
    domain: str
    violations: tuple[dict[str, str], ...]

    @classmethod
    def of(cls, err: grpc.aio.AioRpcError) -> RpcError:
        reason, domain, violations = "", "", []
        for key, value in err.trailing_metadata() or ():
            if key != "grpc-status-details-bin" or not isinstance(value, bytes):
                continue
            try:
                status = status_pb2.Status.FromString(value)
            except Exception:  # malformed details: keep the plain code
                break
            for detail in status.details:
                if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
                    info = error_details_pb2.ErrorInfo()
                    detail.Unpack(info)
                    reason, domain = info.reason, info.domain
                elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
                    bad = error_details_pb2.BadRequest()
                    detail.Unpack(bad)
                    violations = [
                        {"field": v.field, "description": v.description, "reason": v.reason}
                        for v in bad.field_violations
                    ]
        code = err.code()
        return cls(code, err.details() or "", reason or code.name, domain, tuple(violations))


# an upstream status whose message is for the logs only (it may quote an exception)
_OPAQUE_CODES = frozenset({grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL, grpc.StatusCode.DATA_LOSS})


def _rpc_problem(request: Request, err: RpcError, status: int, detail: str | None = None) -> JSONResponse:
    if err.code in _OPAQUE_CODES:
        log.warning("upstream failed", extra={"fields": {"code": err.code.name, "message": err.message,
                                                         "request_id": telemetry.request_id_var.get()}})
        return problem(status, "INTERNAL", f"internal error (request id {telemetry.request_id_var.get()})",
                       request=request)
    return problem(
        status,
        err.reason,
        detail or err.message or err.code.name,
        request=request,
        domain=err.domain,
        violations=err.violations,
    )


# --------------------------------------------------------------------------------------------------
# routes
# --------------------------------------------------------------------------------------------------


async def healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


async def metrics(request: Request) -> Response:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)


def _webhook_result(outcome: str, result: payment_pb2.HandleWebhookResponse, **extra: str) -> JSONResponse:
    WEBHOOKS.labels(outcome).inc()
    body = {
        "received": True,
        "event_id": result.event_id,
        "event_type": result.event_type,
        "duplicate": result.duplicate,
        "outcome": outcome,
        **extra,
    }
    return JSONResponse(body)


def _failed(outcome: str, response: Response) -> Response:
    WEBHOOKS.labels(outcome).inc()
    return response


def stripe_webhook(deps: HttpDeps) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        payload = await request.body()
        signature = request.headers.get("stripe-signature", "")
        if not signature:
            return _failed(
                "rejected",
                problem(400, "MISSING_SIGNATURE", "the Stripe-Signature header is required", request=request),
            )
        if not payload:
            return _failed(
                "rejected", problem(400, "EMPTY_BODY", "the request body is empty", request=request)
            )

        try:
            result = await deps.payment.HandleWebhook(
                payment_pb2.HandleWebhookRequest(payload=payload, signature=signature),
                timeout=deps.rpc_timeout,
            )
        except grpc.aio.AioRpcError as exc:
            err = RpcError.of(exc)
            if err.code in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.UNAUTHENTICATED):
                log.info("webhook rejected", extra={"fields": {"reason": err.reason}})
                return _failed("rejected", _rpc_problem(request, err, 400))
            log.warning(
                "webhook not handled", extra={"fields": {"code": err.code.name, "reason": err.reason}}
            )
            return _failed(
                "retry", _rpc_problem(request, err, 503, "the payment could not be recorded now; retry")
            )

        payment = result.payment
        # A replay (duplicate=True) is confirmed again on purpose: ConfirmBooking is idempotent, and a
        # first delivery whose confirmation failed (503) must still end in a booking when retried.
        if not result.HasField("payment") or payment.status != payment_pb2.PAYMENT_STATUS_SUCCEEDED:
            return _webhook_result("ignored", result)

        try:
            confirmed = await deps.booking.ConfirmBooking(
                booking_pb2.ConfirmBookingRequest(
                    reservation_lock_id=payment.order_ref, payment_id=payment.payment_id
                ),
                timeout=deps.rpc_timeout,
            )
        except grpc.aio.AioRpcError as exc:
            err = RpcError.of(exc)
            if err.code in (grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.ABORTED) and (
                err.reason in REFUND_REASONS
            ):
                return await _refund(request, deps, result, err)
            log.warning(
                "booking not confirmed",
                extra={"fields": {"code": err.code.name, "reason": err.reason, "lock_id": payment.order_ref}},
            )
            return _failed(
                "retry", _rpc_problem(request, err, 503, "the booking could not be confirmed now; retry")
            )
        log.info(
            "booking confirmed",
            extra={"fields": {"booking_id": confirmed.booking_id, "payment_id": payment.payment_id}},
        )
        return _webhook_result(
            "confirmed", result, booking_id=confirmed.booking_id, payment_id=payment.payment_id
        )

    return endpoint


async def _refund(
    request: Request, deps: HttpDeps, result: payment_pb2.HandleWebhookResponse, cause: RpcError
) -> Response:
    payment = result.payment
    try:
        await deps.payment.RefundPayment(
            payment_pb2.RefundPaymentRequest(payment_id=payment.payment_id, reason=REFUND_REASON_TEXT),
            timeout=deps.rpc_timeout,
        )
    except grpc.aio.AioRpcError as exc:
        err = RpcError.of(exc)
        log.error(
            "refund failed",
            extra={"fields": {"code": err.code.name, "reason": err.reason, "payment_id": payment.payment_id}},
        )
        return _failed(
            "retry", _rpc_problem(request, err, 503, "the payment could not be refunded now; retry")
        )
    log.info(
        "payment refunded",
        extra={
            "fields": {"payment_id": payment.payment_id, "lock_id": payment.order_ref, "cause": cause.reason}
        },
    )
    return _webhook_result("refunded", result, payment_id=payment.payment_id)


# --------------------------------------------------------------------------------------------------
# app
# --------------------------------------------------------------------------------------------------


class RequestContext:
    """Pure ASGI middleware: binds ``x-request-id`` (generated when absent) and the W3C trace
    context to the context variables the gRPC client propagates, and echoes the request id."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope.get("headers", ())}
        rid = headers.get("x-request-id") or uuid.uuid4().hex
        telemetry.request_id_var.set(rid)
        telemetry.traceparent_var.set(telemetry.continue_or_start_trace(headers.get("traceparent")).header())

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                raw = list(message.get("headers", ()))
                if not any(k.lower() == b"x-request-id" for k, _ in raw):
                    raw.append((b"x-request-id", rid.encode("latin-1")))
                message["headers"] = raw
            await send(message)

        await self.app(scope, receive, send_with_id)


def create_app(deps: HttpDeps) -> Starlette:
    """The edge HTTP app.  Builds the OpenAPI document (and /docs page) once, here."""
    from edge.dashboard import Dashboard  # imports this module: keep the import here

    document = build_openapi(deps.descriptor_set or default_descriptor_path().read_bytes())
    docs_page = docs_html(document)

    async def openapi_json(request: Request) -> Response:
        return JSONResponse(document)

    async def docs(request: Request) -> Response:
        return HTMLResponse(docs_page)

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        reasons = {404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED"}
        reason = reasons.get(exc.status_code, "BAD_REQUEST" if exc.status_code < 500 else "INTERNAL")
        return problem(exc.status_code, reason, str(exc.detail), request=request, headers=exc.headers)

    async def server_error(request: Request, exc: Exception) -> Response:
        log.exception("unhandled error", exc_info=exc,
                      extra={"fields": {"request_id": telemetry.request_id_var.get()}})
        return problem(
            500, "INTERNAL", f"internal error (request id {telemetry.request_id_var.get()})", request=request
        )

    routes = [
        Route("/healthz", healthz, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
        Route("/openapi.json", openapi_json, methods=["GET"]),
        Route("/docs", docs, methods=["GET"]),
        Route("/webhooks/stripe", stripe_webhook(deps), methods=["POST"]),
        # Clinic dashboard: page, API and the live feed (SSE).
        Mount("/clinic", routes=Dashboard(deps).routes()),
    ]
    app = Starlette(
        routes=routes,
        exception_handlers={HTTPException: http_error, Exception: server_error},
    )
    app.add_middleware(RequestContext)
    app.state.deps = deps
    app.state.openapi = document
    return app


# --------------------------------------------------------------------------------------------------
# serving inside the edge process' event loop
# --------------------------------------------------------------------------------------------------


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:  # the gRPC bootstrap owns SIGTERM/SIGINT
        yield


class HttpServer:
    """uvicorn in the current event loop, on a socket bound by us (so a busy port fails here with
    OSError instead of uvicorn's sys.exit, and port 0 works).  ``stop()`` is the should_exit path."""

    def __init__(self, app: ASGIApp, host: str, port: int, *, graceful_timeout: float = 5.0) -> None:
        self.host = host
        self.requested_port = port
        self.config = uvicorn.Config(
            app,
            host=host,
            port=port,
            lifespan="off",
            log_config=None,
            access_log=False,  # Envoy writes the access log
            server_header=False,
            timeout_graceful_shutdown=graceful_timeout,
        )
        self.server = _Server(self.config)
        self.socket: socket.socket | None = None

    def bind(self) -> int:
        if self.socket is None:
            family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
            sock = socket.socket(family, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind((self.host, self.requested_port))
            except OSError:
                sock.close()
                raise
            sock.set_inheritable(True)
            self.socket = sock
        return self.port

    @property
    def port(self) -> int:
        if self.socket is None:
            raise RuntimeError("not bound yet")
        return self.socket.getsockname()[1]

    @property
    def started(self) -> bool:
        return self.server.started

    def stop(self) -> None:
        self.server.should_exit = True

    async def serve(self, stop: asyncio.Event | None = None) -> None:
        """Serve until ``stop`` is set, :meth:`stop` is called or this task is cancelled; each way
        ends with uvicorn's graceful shutdown (in-flight requests finish within the timeout)."""
        self.bind()
        assert self.socket is not None
        task = asyncio.ensure_future(self.server.serve(sockets=[self.socket]))
        waiter = asyncio.ensure_future(stop.wait()) if stop is not None else None
        try:
            await asyncio.wait(
                [t for t in (task, waiter) if t is not None], return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            if waiter is not None:
                waiter.cancel()
            if not task.done():
                self.stop()
                await task
            self.socket.close()
        task.result()


async def serve_http(
    app: ASGIApp, host: str, port: int, *, stop: asyncio.Event | None = None, graceful_timeout: float = 5.0
) -> None:
    """Run ``app`` on host:port in the current loop until ``stop`` is set or the task is cancelled
    (e.g. as a background task of the edge's gRPC :class:`petpro.grpc_server.App`)."""
    await HttpServer(app, host, port, graceful_timeout=graceful_timeout).serve(stop)
