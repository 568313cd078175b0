"""The one server interceptor every PetPro gRPC server runs.

Per RPC it:
1. binds the request id (``x-request-id``, generated when absent) to a context variable, so logs and
   outgoing calls carry it (the W3C trace context is the OpenTelemetry interceptor's, which runs
   outside this one);
2. authenticates first: on a service registered with an authenticator (the client-facing ones),
   every method that the proto policy does not declare ``public`` needs a valid bearer token, checked
   before the request is even decoded or validated (no token → UNAUTHENTICATED, whatever the body);
3. validates the request: undecodable bytes (invalid UTF-8 in a string) and control characters in
   any string (:mod:`petpro.textcheck`), then protovalidate (rules declared in the protos) →
   INVALID_ARGUMENT with a ``google.rpc.BadRequest`` naming each offending field;
4. maps :class:`petpro.errors.DomainError` to its status with ``google.rpc.ErrorInfo`` (and
   ``BadRequest``) details, a database error caused by a client value to INVALID_ARGUMENT /
   FAILED_PRECONDITION (:func:`petpro.dberrors.classify`), and any unexpected exception to INTERNAL
   without leaking internals (logged with the request id);
5. records Prometheus metrics and one JSON access-log line.
"""

from __future__ import annotations

import inspect
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any

import grpc
import protovalidate
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2

from petpro import telemetry
from petpro.authn import bearer, principal_var
from petpro.errors import DomainError, FieldViolation, InvalidArgument, Kind
from petpro.policy import policy
from petpro.textcheck import invalid_utf8_field, text_violations

log = logging.getLogger("petpro.rpc")

# google.rpc.ErrorInfo.domain: "<service>.petpro.dev", the service being the proto package's domain
# ("/petpro.booking.v1.BookingService/X" → "booking.petpro.dev"); a reason is unique within its domain.
# An error passed through from another service (petpro.upstream.UpstreamError) keeps its own domain.
ERROR_DOMAIN = "petpro.dev"


def error_domain(full_method: str) -> str:
    """The ErrorInfo domain of the errors an RPC raises itself."""
    parts = full_method.lstrip("/").split("/")[0].split(".")
    return f"{parts[1]}.{ERROR_DOMAIN}" if len(parts) > 2 and parts[0] == "petpro" else ERROR_DOMAIN


KIND_TO_CODE: dict[Kind, grpc.StatusCode] = {k: grpc.StatusCode[k.value] for k in Kind}

_SKIP_PREFIXES = ("/grpc.health.v1.", "/grpc.reflection.")


def _field_path(violation: Any) -> str:
    """``buf.validate.FieldPath`` → ``items[2].name`` style path."""
    parts: list[str] = []
    for el in violation.proto.field.elements:
        name = el.field_name
        sub = getattr(el, "subscript", None)  # list index or map key (protovalidate's own runtime: a Oneof)
        subscript = f"[{sub.value}]" if sub is not None else ""
        parts.append(f"{name}{subscript}")
    return ".".join(parts)


def violations_of(message: Any, validator: protovalidate.Validator) -> list[FieldViolation]:
    out = text_violations(message)
    for v in validator.collect_violations(message):
        p = v.proto
        out.append(FieldViolation(field=_field_path(v), description=p.message, reason=p.rule_id))
    return out


def rich_status(
    code: grpc.StatusCode,
    message: str,
    reason: str,
    violations: tuple[FieldViolation, ...] = (),
    metadata: dict[str, str] | None = None,
    domain: str = ERROR_DOMAIN,
) -> status_pb2.Status:
    details = []
    info = error_details_pb2.ErrorInfo(reason=reason, domain=domain, metadata=metadata or {})
    packed = any_pb2.Any()
    packed.Pack(info)
    details.append(packed)
    if violations:
        bad = error_details_pb2.BadRequest(
            field_violations=[
                error_details_pb2.BadRequest.FieldViolation(
                    field=v.field, description=v.description, reason=v.reason
                )
                for v in violations
            ]
        )
        packed = any_pb2.Any()
        packed.Pack(bad)
        details.append(packed)
    return status_pb2.Status(code=code.value[0], message=message, details=details)


async def abort_with(context: grpc.aio.ServicerContext, status: status_pb2.Status) -> None:
    code = next(c for c in grpc.StatusCode if c.value[0] == status.code)
    await context.abort(
        code, status.message, trailing_metadata=(("grpc-status-details-bin", status.SerializeToString()),)
    )


def status_for(exc: BaseException, request_id: str, domain: str = ERROR_DOMAIN) -> status_pb2.Status:
    if isinstance(exc, DomainError):
        return rich_status(
            KIND_TO_CODE[exc.kind],
            exc.message,
            exc.reason,
            exc.violations,
            exc.metadata,
            getattr(exc, "domain", "") or domain,
        )
    if isinstance(exc, NotImplementedError):  # the generated servicer base for an RPC not built yet
        return rich_status(
            grpc.StatusCode.UNIMPLEMENTED, "method not implemented", "UNIMPLEMENTED", domain=domain
        )
    if type(exc).__module__.startswith(
        ("sqlalchemy", "psycopg", "redis")
    ):  # (no DB import where there is none)
        from petpro.dberrors import classify, unavailable

        mapped = classify(exc) or unavailable(exc)
        if mapped is not None:
            return status_for(mapped, request_id, domain)
    return status_pb2.Status(code=code_pb2.INTERNAL, message=f"internal error (request id {request_id})")


class _Undecodable:
    """What the lazy deserializer hands on when the bytes are not a valid message: the interceptor
    answers INVALID_ARGUMENT (after authentication), never gRPC's own INTERNAL."""

    def __init__(self, data: bytes, deserializer: Callable[[bytes], Any]) -> None:
        self.data = data
        self.message_type = getattr(deserializer, "__self__", None)

    def error(self) -> InvalidArgument:
        desc = getattr(self.message_type, "DESCRIPTOR", None)
        field = invalid_utf8_field(desc, self.data) if desc is not None else None
        if field:
            return InvalidArgument.field(field, "must be valid UTF-8", "INVALID_UTF8")
        return InvalidArgument("the request message could not be decoded", reason="MALFORMED_REQUEST")


def _lazy(deserializer: Callable[[bytes], Any] | None) -> Callable[[bytes], Any] | None:
    if deserializer is None:
        return None

    def decode(data: bytes) -> Any:
        try:
            return deserializer(data)
        except Exception:
            return _Undecodable(data, deserializer)

    return decode


class KitServerInterceptor(grpc.aio.ServerInterceptor):
    """``authenticators``: service full name → an object with ``async validate(token) → principal``
    (:class:`petpro.authn.Authenticator`) for the client-facing services; their non-public methods
    (``petpro.policy``) authenticate before anything else."""

    def __init__(
        self,
        validator: protovalidate.Validator | None = None,
        authenticators: Mapping[str, Any] | None = None,
    ) -> None:
        self.validator = validator or protovalidate.Validator()
        self.authenticators = dict(authenticators or {})

    def _authenticator_for(self, method: str) -> Any:
        authn = self.authenticators.get(method.lstrip("/").partition("/")[0])
        if authn is None:
            return None
        try:
            return None if policy(method).public else authn
        except KeyError:  # a method the descriptors don't know: authenticate (fail closed)
            return authn

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any] | None]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        handler = await continuation(details)
        method = details.method
        if handler is None or method.startswith(_SKIP_PREFIXES):
            return handler
        md = {k: v for k, v in (details.invocation_metadata or ()) if isinstance(v, str)}
        authn = self._authenticator_for(method)
        if handler.unary_unary:
            return grpc.unary_unary_rpc_method_handler(
                self._unary(method, md, handler.unary_unary, authn),
                request_deserializer=_lazy(handler.request_deserializer),
                response_serializer=handler.response_serializer,
            )
        if handler.unary_stream:
            return grpc.unary_stream_rpc_method_handler(
                self._server_stream(method, md, handler.unary_stream, authn),
                request_deserializer=_lazy(handler.request_deserializer),
                response_serializer=handler.response_serializer,
            )
        return handler  # client/bidi streaming: none in our contracts yet

    async def _admit(
        self,
        request: Any,
        context: grpc.aio.ServicerContext,
        md: dict[str, str],
        authn: Any,
        method: str = "",
    ) -> None:
        """Authentication first (no token → UNAUTHENTICATED whatever the body), then the request."""
        principal_var.set(None)
        if authn is not None:
            principal_var.set(await authn.validate(bearer(md)))
        if isinstance(request, _Undecodable):
            raise request.error()
        await self._check(request, context, method)

    def _begin(self, md: dict[str, str]) -> str:
        rid = md.get("x-request-id") or uuid.uuid4().hex
        telemetry.request_id_var.set(rid)
        return rid

    async def _check(self, request: Any, context: grpc.aio.ServicerContext, method: str = "") -> None:
        violations = violations_of(request, self.validator)
        if violations:
            summary = "; ".join(f"{v.field}: {v.description}" for v in violations)
            await abort_with(
                context,
                rich_status(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    f"invalid request: {summary}",
                    "INVALID_ARGUMENT",
                    tuple(violations),
                    domain=error_domain(method),
                ),
            )

    async def _fail(self, exc: Exception, context: grpc.aio.ServicerContext, method: str, rid: str) -> None:
        if isinstance(exc, DomainError | NotImplementedError):
            log.info(
                "rpc rejected",
                extra={"fields": {"method": method, "reason": getattr(exc, "reason", "UNIMPLEMENTED")}},
            )
        else:
            log.exception("rpc failed", extra={"fields": {"method": method, "request_id": rid}})
        await abort_with(context, status_for(exc, rid, error_domain(method)))

    def _finish(self, method: str, context: grpc.aio.ServicerContext, started: float, rid: str) -> None:
        elapsed = time.perf_counter() - started
        code = context.code() if hasattr(context, "code") else None
        name = (code.name if isinstance(code, grpc.StatusCode) else None) or "OK"
        telemetry.RPC_HANDLED.labels(method, name).inc()
        telemetry.RPC_LATENCY.labels(method).observe(elapsed)
        if log.isEnabledFor(logging.DEBUG) or name != "OK":
            log.info(
                "rpc",
                extra={"fields": {"method": method, "code": name, "ms": round(elapsed * 1000, 2)}},
            )

    def _unary(self, method: str, md: dict[str, str], behavior: Callable, authn: Any = None) -> Callable:
        async def wrapper(request: Any, context: grpc.aio.ServicerContext) -> Any:
            rid = self._begin(md)
            started = time.perf_counter()
            try:
                await self._admit(request, context, md, authn, method)
                return await behavior(request, context)
            except grpc.aio.AbortError:
                raise
            except Exception as exc:
                await self._fail(exc, context, method, rid)
            finally:
                self._finish(method, context, started, rid)

        return wrapper

    def _server_stream(
        self, method: str, md: dict[str, str], behavior: Callable, authn: Any = None
    ) -> Callable:
        async def wrapper(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            rid = self._begin(md)
            started = time.perf_counter()
            try:
                await self._admit(request, context, md, authn, method)
                result = behavior(request, context)
                if inspect.isasyncgen(result):
                    async for item in result:
                        yield item
                else:
                    await result
            except grpc.aio.AbortError:
                raise
            except Exception as exc:
                await self._fail(exc, context, method, rid)
            finally:
                self._finish(method, context, started, rid)

        return wrapper
