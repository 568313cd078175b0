"""The kit around every method of every PetPro gRPC server (:class:`KitServerStack`), built once per
method when the service is registered, not run as a chain of interceptors per call.

Per RPC it:
1. binds the request id (``x-request-id``, generated when absent) to a context variable, so logs and
   outgoing calls carry it, and continues the caller's W3C trace context in a SERVER span
   (:func:`petpro.telemetry.enter_server_span`: a recorded span when sampled, a cheap non-recording one
   when not);
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
5. counts the call and its duration (:func:`petpro.telemetry.rpc_metrics`, exported to Prometheus) and
   logs one JSON line for a call that did not end OK.
"""

from __future__ import annotations

import inspect
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

import grpc
import protovalidate
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2

from petpro import telemetry
from petpro.authn import bearer, principal_var
from petpro.errors import DomainError, FieldViolation, InvalidArgument, Kind
from petpro.policy import policy
from petpro.textcheck import invalid_utf8_field, text_check, text_violations

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


def _has_rules(message_type: Any) -> bool:
    """Whether ``message_type`` declares protovalidate rules anywhere (when in doubt: yes)."""
    try:
        return _declares_rules(message_type.DESCRIPTOR)
    except Exception:
        return True


def _declares_rules(desc: Any, seen: set[str] | None = None) -> bool:
    """Any ``buf.validate`` option on the message, a field, a oneof, or a message type reachable."""
    seen = set() if seen is None else seen
    if desc.full_name in seen:
        return False
    seen.add(desc.full_name)
    if any(k.full_name.startswith("buf.validate.") for k, _ in desc.GetOptions().ListFields()):
        return True
    for oneof in desc.oneofs:
        if any(k.full_name.startswith("buf.validate.") for k, _ in oneof.GetOptions().ListFields()):
            return True
    for f in desc.fields:
        if any(k.full_name.startswith("buf.validate.") for k, _ in f.GetOptions().ListFields()):
            return True
        if f.message_type is not None and _declares_rules(f.message_type, seen):
            return True
    return False


def request_check(
    message_type: Any, validator: protovalidate.Validator
) -> Callable[[Any], list[FieldViolation]] | None:
    """The request checks of one message type, decided once (at registration): the text rules when
    the type can hold a string, protovalidate when it declares rules; None when neither applies."""
    text = text_check(message_type.DESCRIPTOR)
    rules = _has_rules(message_type)
    if text is None and not rules:
        return None
    collect = validator.collect_violations

    def check(message: Any) -> list[FieldViolation]:
        out = text(message) if text is not None else []
        if rules:
            for v in collect(message):
                p = v.proto
                out.append(FieldViolation(field=_field_path(v), description=p.message, reason=p.rule_id))
        return out

    return check


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


class KitServerStack:
    """The kit's server side of every RPC, built once per method when the service is registered
    (:meth:`wrap`), not as a chain of ``grpc.aio`` interceptors run per call: what a method needs is
    decided at registration — its authenticator (none for internal services and ``public`` methods),
    its request checks (:func:`petpro.textcheck.text_check` and protovalidate, only for message types
    that have something to check), its metric cells and error domain — and each call runs one
    wrapper.  ``authenticators``: service full name → an object with ``async validate(token) →
    principal`` (:class:`petpro.authn.Authenticator`) for the client-facing services; their
    non-public methods (``petpro.policy``) authenticate before anything else."""

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

    def wrap(self, method: str, handler: grpc.RpcMethodHandler[Any, Any]) -> grpc.RpcMethodHandler[Any, Any]:
        """``handler`` of ``method`` ("/pkg.Service/Method") with the kit around it."""
        if method.startswith(_SKIP_PREFIXES):
            return handler
        call = _KitCall(self, method, handler.request_deserializer)
        if handler.unary_unary:
            return grpc.unary_unary_rpc_method_handler(
                call.unary(handler.unary_unary),
                request_deserializer=_lazy(handler.request_deserializer),
                response_serializer=handler.response_serializer,
            )
        if handler.unary_stream:
            return grpc.unary_stream_rpc_method_handler(
                call.server_stream(handler.unary_stream),
                request_deserializer=_lazy(handler.request_deserializer),
                response_serializer=handler.response_serializer,
            )
        return handler  # client/bidi streaming: none in our contracts yet


def _metadata(context: grpc.aio.ServicerContext) -> dict[str, str]:
    return {k: v for k, v in (context.invocation_metadata() or ()) if isinstance(v, str)}


class _KitCall:
    """What one method's wrapper needs, decided once."""

    def __init__(self, stack: KitServerStack, method: str, deserializer: Any) -> None:
        self.method = method
        self.domain = error_domain(method)
        self.authn = stack._authenticator_for(method)
        message_type = getattr(deserializer, "__self__", None)
        self.request_violations = (
            request_check(message_type, stack.validator) if message_type is not None else None
        )
        self.metrics = telemetry.rpc_metrics(method)

    async def _admit(self, request: Any, context: grpc.aio.ServicerContext, md: dict[str, str]) -> None:
        """Authentication first (no token → UNAUTHENTICATED whatever the body), then the request."""
        if self.authn is not None:
            principal_var.set(await self.authn.validate(bearer(md)))
        if isinstance(request, _Undecodable):
            raise request.error()
        if self.request_violations is not None:
            violations = self.request_violations(request)
            if violations:
                summary = "; ".join(f"{v.field}: {v.description}" for v in violations)
                await abort_with(
                    context,
                    rich_status(
                        grpc.StatusCode.INVALID_ARGUMENT,
                        f"invalid request: {summary}",
                        "INVALID_ARGUMENT",
                        tuple(violations),
                        domain=self.domain,
                    ),
                )

    def _begin(self, context: grpc.aio.ServicerContext) -> tuple[dict[str, str], str, Any]:
        md = _metadata(context)
        rid = md.get("x-request-id") or uuid.uuid4().hex
        telemetry.request_id_var.set(rid)
        principal_var.set(None)
        return md, rid, telemetry.enter_server_span(self.method, md, context)

    async def _fail(self, exc: Exception, context: grpc.aio.ServicerContext, rid: str, span: Any) -> str:
        """Abort with the status ``exc`` maps to; → the reason, for the call's log line.  A refusal (a
        DomainError) is logged once, by :meth:`_finish`; an unexpected exception with its traceback."""
        if not isinstance(exc, DomainError | NotImplementedError):
            log.exception("rpc failed", extra={"fields": {"method": self.method, "request_id": rid}})
            telemetry.record_exception(span[0], exc)
        reason = getattr(
            exc, "reason", "UNIMPLEMENTED" if isinstance(exc, NotImplementedError) else "INTERNAL"
        )
        await abort_with(context, status_for(exc, rid, self.domain))
        return str(reason)

    def _finish(self, context: grpc.aio.ServicerContext, started: float, span: Any, reason: str) -> None:
        elapsed = time.perf_counter() - started
        code = context.code()
        name = (code.name if isinstance(code, grpc.StatusCode) else None) or "OK"
        self.metrics.observe(name, elapsed)
        telemetry.exit_server_span(span, code if isinstance(code, grpc.StatusCode) else None)
        if name != "OK" or log.isEnabledFor(logging.DEBUG):
            fields = {"method": self.method, "code": name, "ms": round(elapsed * 1000, 2)}
            if reason:
                fields["reason"] = reason
            log.info("rpc", extra={"fields": fields})

    def unary(self, behavior: Callable) -> Callable:
        async def wrapper(request: Any, context: grpc.aio.ServicerContext) -> Any:
            md, rid, span = self._begin(context)
            started = time.perf_counter()
            reason = ""
            try:
                await self._admit(request, context, md)
                return await behavior(request, context)
            except grpc.aio.AbortError:
                raise
            except Exception as exc:
                reason = await self._fail(exc, context, rid, span)
            finally:
                self._finish(context, started, span, reason)

        return wrapper

    def server_stream(self, behavior: Callable) -> Callable:
        async def wrapper(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            md, rid, span = self._begin(context)
            started = time.perf_counter()
            reason = ""
            try:
                await self._admit(request, context, md)
                result = behavior(request, context)
                if inspect.isasyncgen(result):
                    async for item in result:
                        yield item
                else:
                    await result
            except grpc.aio.AbortError:
                raise
            except Exception as exc:
                reason = await self._fail(exc, context, rid, span)
            finally:
                self._finish(context, started, span, reason)

        return wrapper
