"""Observability of every PetPro process: OpenTelemetry tracing, JSON logs with request and trace ids,
Prometheus metrics.

Tracing is set up once per process by :func:`setup_tracing` (called from ``grpc_server.main``; nothing
happens at import time).  The SDK always runs, so every request has a trace id in the logs and in the
``traceparent`` passed on; spans are exported only when an exporter is configured:

* ``OTEL_EXPORTER_OTLP_ENDPOINT`` / ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` (the standard OTel variables,
  also ``OTEL_EXPORTER_OTLP_HEADERS``, ``OTEL_BSP_*`` …): OTLP over HTTP (JSON encoding) to a collector;
* ``PETPRO_TRACES_DIR``: OTLP-JSON lines, one file per process (``<dir>/<service>-<pid>.jsonl``), which
  ``petpro up`` sets to ``$PETPRO_HOME/traces`` and ``petpro traces`` prints as trees.

Spans come from the kit's gRPC server and client (:func:`enter_server_span`, :func:`start_rpc_span`:
made here, a non-recording span without the SDK when the sampler would drop it), the instrumentations
(the ASGI middleware of the edge's Starlette app, SQLAlchemy engines, Redis clients) and a few more
made here by hand: the outbox publish (:func:`start_producer_span`), the Kafka consume (:func:`consumer_span`) and the SMTP send.  The Kafka
hop carries the W3C ``traceparent`` in the CloudEvents headers the outbox writes.
"""

from __future__ import annotations

import bisect
import contextvars
import functools
import json
import logging
import os
import random
import sys
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.trace import NonRecordingSpan, Span, SpanContext, SpanKind, TraceFlags
from opentelemetry.trace.status import Status, StatusCode
from prometheus_client import REGISTRY, Counter, Gauge, start_http_server
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

request_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="")

log = logging.getLogger("petpro.telemetry")

TRACES_DIR_ENV = "PETPRO_TRACES_DIR"
_OTLP_ENDPOINT_ENVS = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
# health checks and reflection are not traced (probes would drown the traces)
UNTRACED_SERVICES = (
    "grpc.health.v1.Health",
    "grpc.reflection.v1alpha.ServerReflection",
    "grpc.reflection.v1.ServerReflection",
)
_UNTRACED_URLS = "/healthz,/metrics"

_provider: Any = None  # the SDK TracerProvider once set up


# --------------------------------------------------------------------------------------------------
# set-up
# --------------------------------------------------------------------------------------------------


def exporters_from_env(service: str, environ: Mapping[str, str] = os.environ) -> list[Any]:
    """The span exporters the environment asks for (none when nothing is configured, or with the
    standard ``OTEL_TRACES_EXPORTER=none``)."""
    out: list[Any] = []
    if environ.get("OTEL_TRACES_EXPORTER", "").strip().lower() == "none":
        return out
    if any(environ.get(k) for k in _OTLP_ENDPOINT_ENVS):
        from opentelemetry.exporter.otlp.json.http.trace_exporter import OTLPSpanExporter

        out.append(OTLPSpanExporter())
    traces_dir = environ.get(TRACES_DIR_ENV)
    if traces_dir:
        from opentelemetry.exporter.otlp.json.file.trace_exporter import FileSpanExporter

        path = Path(traces_dir)
        path.mkdir(parents=True, exist_ok=True)
        out.append(FileSpanExporter(path / f"{service}-{os.getpid()}.jsonl"))
    return out


def _root_sampler() -> Any:
    """Parent-based; a span without a parent is kept when it starts work (SERVER, CONSUMER, PRODUCER)
    and dropped when it is a call made outside any request (CLIENT/INTERNAL: the relay's and the
    sweepers' polling queries), so background polling does not flood the traces."""
    from opentelemetry.sdk.trace.sampling import Decision, ParentBased, Sampler, SamplingResult

    class WorkRoots(Sampler):
        def should_sample(
            self,
            parent_context: Any,
            trace_id: int,
            name: str,
            kind: SpanKind | None = None,
            attributes: Any = None,
            links: Any = None,
            trace_state: Any = None,
        ) -> SamplingResult:
            keep = kind in (SpanKind.SERVER, SpanKind.CONSUMER, SpanKind.PRODUCER)
            return SamplingResult(Decision.RECORD_AND_SAMPLE if keep else Decision.DROP, attributes)

        def get_description(self) -> str:
            return "WorkRoots"

    return ParentBased(root=WorkRoots())


def _unexported_sampler() -> Any:
    """No exporter in this process (the deployed default): a span nobody will read is not recorded.
    A trace started here is dropped (it still gets its trace id, for the logs and the ``traceparent``
    passed on, flagged not sampled); one a caller sampled is still recorded, so the services downstream
    that do export see the same decision.  A recorded span of a refused ReserveSlot formatted the
    whole traceback of the abort (``Span.record_exception``): ~20 % of booking_svc's samples with
    1,000 contenders on one slot, for spans that were then dropped."""
    from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ParentBased

    return ParentBased(root=ALWAYS_OFF)


def setup_tracing(service: str, exporters: Sequence[Any] | None = None) -> Any:
    """Install the SDK tracer provider for this process (resource ``service.name=service``, W3C
    propagation; ``OTEL_TRACES_SAMPLER`` when set, else :func:`_root_sampler`, or
    :func:`_unexported_sampler` when the environment configures no exporter).  ``exporters``
    default to :func:`exporters_from_env`.  Idempotent; returns the provider."""
    global _provider
    if _provider is not None or os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return _provider  # (the standard off switch: then only incoming trace context is passed on)
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    resource = Resource.create({"service.name": os.environ.get("OTEL_SERVICE_NAME") or service})
    exported = list(exporters_from_env(service) if exporters is None else exporters)
    global _sampling
    if os.environ.get("OTEL_TRACES_SAMPLER"):
        sampler = None  # the SDK reads the standard variables
        _sampling = ""
    elif (
        exported or exporters is not None
    ):  # (a caller passing exporters, even none, adds its own processors)
        sampler = _root_sampler()
        _sampling = "work"
    else:
        sampler = _unexported_sampler()
        _sampling = "off"
    provider = TracerProvider(resource=resource, sampler=sampler)
    for exporter in exported:
        provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    _provider = provider
    return provider


def shutdown_tracing() -> None:
    """Flush and stop the exporters (end of ``main``)."""
    if _provider is not None:
        _provider.shutdown()


class FastTracer(trace.Tracer):
    """A tracer that makes a span the installed sampler would drop (see :func:`_unsampled`) without the
    SDK: a non-recording span carrying the trace on; every other span is ``inner``'s."""

    def __init__(self, inner: trace.Tracer) -> None:
        self.inner = inner

    def start_span(
        self,
        name: str,
        context: otel_context.Context | None = None,
        kind: SpanKind = SpanKind.INTERNAL,
        *args: Any,
        **kwargs: Any,
    ) -> Span:
        parent = trace.get_current_span(context).get_span_context()
        if _unsampled(parent, kind):
            return _non_recording(parent)
        return self.inner.start_span(name, context, kind, *args, **kwargs)

    @contextmanager
    def start_as_current_span(  # type: ignore[override]
        self,
        name: str,
        context: otel_context.Context | None = None,
        kind: SpanKind = SpanKind.INTERNAL,
        attributes: Any = None,
        links: Any = None,
        start_time: int | None = None,
        record_exception: bool = True,
        set_status_on_exception: bool = True,
        end_on_exit: bool = True,
    ) -> Iterator[Span]:
        span = self.start_span(
            name, context, kind, attributes, links, start_time, record_exception, set_status_on_exception
        )
        with trace.use_span(
            span,
            end_on_exit=end_on_exit,
            record_exception=record_exception,
            set_status_on_exception=set_status_on_exception,
        ) as current:
            yield current


@functools.cache
def tracer() -> trace.Tracer:
    """The kit's tracer, made once: ``get_tracer`` builds a new one (and its scope) on every call, 4 %
    of payment_svc's CPU in the full flow when called per span.  Made before ``setup_tracing``, it is
    the API's proxy, which follows the provider set later; a span the sampler would drop is made
    without the SDK (:class:`FastTracer`)."""
    return FastTracer(trace.get_tracer("petpro"))


# --------------------------------------------------------------------------------------------------
# instrumentations the kit wires in explicitly (no monkey-patching of grpc or starlette)
# --------------------------------------------------------------------------------------------------


# -- gRPC spans, made by the kit itself (petpro.interceptors, petpro.grpc_client) ---------------------
#
# A span nobody records (the deployed default: no exporter, or a caller's unsampled trace) is not
# made by the SDK at all: its sampler would drop it anyway.  A cheap non-recording span takes its
# place, with the parent's trace id (or a new one) and a new span id, so trace ids still reach the
# logs and the ``traceparent`` passed on — what the SDK's dropped span would have carried.

_RPC_ATTRIBUTES = ("rpc.system", "rpc.service", "rpc.method", "rpc.grpc.status_code")
# how the installed provider samples (setup_tracing): "" (let the SDK decide: a sampler from the
# environment, or no SDK), "work" (parent-based, roots kept when they start work), "off" (parent-based,
# roots dropped: no exporter)
_sampling = ""
_WORK_KINDS = (SpanKind.SERVER, SpanKind.CONSUMER, SpanKind.PRODUCER)
_rng = random.Random()


def _unsampled(parent: SpanContext, kind: SpanKind) -> bool:
    """Whether the installed sampler would drop a span of ``kind`` under ``parent``."""
    if not _sampling:
        return False
    if parent.is_valid:
        return not parent.trace_flags.sampled
    return _sampling == "off" or kind not in _WORK_KINDS


def _non_recording(parent: SpanContext) -> Span:
    valid = parent.is_valid
    return NonRecordingSpan(
        SpanContext(
            trace_id=parent.trace_id if valid else (_rng.getrandbits(128) or 1),
            span_id=_rng.getrandbits(64) or 1,
            is_remote=False,
            trace_flags=TraceFlags(TraceFlags.DEFAULT),
            trace_state=parent.trace_state if valid else None,
        )
    )


def _rpc_attributes(method: str) -> dict[str, Any]:
    service, _, name = method.lstrip("/").partition("/")
    return {"rpc.system": "grpc", "rpc.service": service, "rpc.method": name}


def start_rpc_span(method: str, kind: SpanKind, context: otel_context.Context | None = None) -> Span:
    """A gRPC span named ``method`` ("/pkg.Service/Method") under ``context`` (default: the current
    one): recorded when sampled, else a non-recording span carrying the trace on."""
    parent = trace.get_current_span(context).get_span_context()
    if _unsampled(parent, kind):
        return _non_recording(parent)
    return tracer().start_span(method, context=context, kind=kind, attributes=_rpc_attributes(method))


def end_rpc_span(span: Span, code: Any) -> None:
    """End a recorded gRPC span with its status (``code``: a ``grpc.StatusCode``, None for OK)."""
    if not span.is_recording():
        return
    if code is not None and code.name != "OK":
        span.set_attribute("rpc.grpc.status_code", code.value[0])
        span.set_status(Status(StatusCode.ERROR, code.name))
    else:
        span.set_attribute("rpc.grpc.status_code", 0)
    span.end()


def record_exception(span: Span, exc: BaseException) -> None:
    """An unexpected exception on a recorded span (a refusal, a DomainError, is not recorded)."""
    if span.is_recording():
        span.record_exception(exc)


def enter_server_span(method: str, metadata: Mapping[str, str], context: Any = None) -> tuple[Span, object]:
    """The SERVER span of an incoming call continuing the caller's trace context (``metadata``), made
    current; → (span, token) for :func:`exit_server_span`."""
    parent = propagate.extract(metadata) if metadata else otel_context.Context()
    span = start_rpc_span(method, SpanKind.SERVER, parent)
    return span, otel_context.attach(trace.set_span_in_context(span, parent))


def exit_server_span(state: tuple[Span, object], code: Any) -> None:
    span, token = state
    otel_context.detach(token)  # type: ignore[arg-type]
    end_rpc_span(span, code)


def inject_traceparent(span: Span, metadata: list[tuple[str, str]]) -> None:
    """Append the W3C trace context naming ``span`` (and any baggage) to outgoing ``metadata``."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier, context=trace.set_span_in_context(span))
    metadata.extend(carrier.items())


def asgi_middleware() -> tuple[type, dict[str, Any]]:
    """(middleware class, options) for ``Starlette.add_middleware``: a SERVER span per request."""
    return AsgiServerSpans, {"excluded": _UNTRACED_URLS}


_TRACE_HEADERS = frozenset((b"traceparent", b"tracestate", b"baggage"))


class AsgiServerSpans:
    """A SERVER span per HTTP request (``"POST /webhooks/stripe"``, as OpenTelemetry's ASGI middleware
    names it) continuing the caller's W3C trace context, current while the app runs; its status code,
    and an error on a 5xx or an exception.  The span is made like the gRPC servers' (``start_rpc_span``):
    a non-recording one without the SDK when the sampler would drop it (the deployed default: no
    exporter), so a request pays for no attributes nobody records.  OpenTelemetry's middleware built
    the request's attributes (URL parsing, headers) and wrapped every send before the sampler said
    no: ~7 % of the edge's samples in the full flow, for one webhook per booking."""

    def __init__(self, app: Any, excluded: str = _UNTRACED_URLS) -> None:
        self.app = app
        self.excluded = frozenset(p for p in excluded.split(",") if p)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or path in self.excluded:
            await self.app(scope, receive, send)
            return
        carrier = {
            k.decode("latin-1"): v.decode("latin-1")
            for k, v in scope.get("headers") or ()
            if k in _TRACE_HEADERS
        }
        parent = propagate.extract(carrier) if carrier else otel_context.Context()
        parent_span = trace.get_current_span(parent).get_span_context()
        method = scope.get("method", "") or "HTTP"
        span: Span
        if _unsampled(parent_span, SpanKind.SERVER):
            span = _non_recording(parent_span)
        else:
            span = tracer().start_span(
                f"{method} {path}",
                context=parent,
                kind=SpanKind.SERVER,
                attributes={
                    "http.request.method": method,
                    "url.path": path,
                    "url.scheme": scope.get("scheme", "http"),
                },
            )
        token = otel_context.attach(trace.set_span_in_context(span, parent))
        if not span.is_recording():
            try:
                await self.app(scope, receive, send)
            finally:
                otel_context.detach(token)
            return
        status = 0

        async def send_status(message: Any) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        except BaseException as exc:
            span.record_exception(exc)
            span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
            raise
        finally:
            otel_context.detach(token)
            if status:
                span.set_attribute("http.response.status_code", status)
                if status >= 500:
                    span.set_status(Status(StatusCode.ERROR))
            span.end()


def instrument_engine(engine: Any) -> Any:
    """A CLIENT span per SQL statement of this (async) SQLAlchemy engine."""
    from opentelemetry import metrics
    from opentelemetry.instrumentation.sqlalchemy.engine import EngineTracer

    usage = metrics.get_meter("petpro").create_up_down_counter(
        "db.client.connections.usage", unit="connections"
    )
    EngineTracer(
        FastTracer(trace.get_tracer("opentelemetry.instrumentation.sqlalchemy")),
        getattr(engine, "sync_engine", engine),
        usage,
    )
    return engine


@contextmanager
def sql_span(operation: str) -> Iterator[None]:
    """A CLIENT span for a statement sent on the psycopg connection directly (the hot paths that bypass
    SQLAlchemy, and so its instrumentation), named like that instrumentation's spans (``INSERT``).
    Like them, only inside a traced request: background polling starts no trace."""
    parent = trace.get_current_span().get_span_context()
    if not parent.is_valid or _unsampled(parent, SpanKind.CLIENT):
        yield
        return
    with tracer().start_as_current_span(
        operation,
        kind=SpanKind.CLIENT,
        attributes={"db.system": "postgresql", "db.operation.name": operation},
    ):
        yield


def instrument_redis(client: Any) -> Any:
    from opentelemetry.instrumentation.redis import RedisInstrumentor

    RedisInstrumentor.instrument_client(client)
    return client


# --------------------------------------------------------------------------------------------------
# W3C trace context
# --------------------------------------------------------------------------------------------------


def current_traceparent() -> str:
    """``traceparent`` of the current span ("" outside any trace), e.g. stored with an outbox row."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier.get("traceparent", "")


def context_from_traceparent(value: str | None) -> otel_context.Context:
    """The context whose parent is the span ``value`` names (an empty context when absent/invalid)."""
    return propagate.extract({"traceparent": value} if value else {})


def trace_ids() -> tuple[str, str]:
    """(trace id, span id) of the current span as hex, or ("", "")."""
    ctx = trace.get_current_span().get_span_context()
    if not ctx.is_valid:
        return "", ""
    return format(ctx.trace_id, "032x"), format(ctx.span_id, "016x")


def _header_dict(headers: Iterable[tuple[str, bytes | None]] | None) -> dict[str, str]:
    return {k: (v or b"").decode("latin-1") for k, v in headers or ()}


def start_producer_span(
    topic: str, *, parent_traceparent: str | None, key: str = "", message_id: str = ""
) -> Span:
    """A PRODUCER span ``publish <topic>`` under the trace the event was written in (its stored
    ``traceparent``); the message carries :func:`traceparent_of` it.  The caller ends it once the
    broker acknowledged (or failed)."""
    return tracer().start_span(
        f"publish {topic}",
        context=context_from_traceparent(parent_traceparent),
        kind=SpanKind.PRODUCER,
        attributes={
            "messaging.system": "kafka",
            "messaging.operation.type": "send",
            "messaging.destination.name": topic,
            "messaging.kafka.message.key": key,
            "messaging.message.id": message_id,
        },
    )


def traceparent_of(span: Span) -> str:
    """The W3C ``traceparent`` naming ``span`` as the parent ("" for a non-recording, invalid span)."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier, context=trace.set_span_in_context(span))
    return carrier.get("traceparent", "")


@contextmanager
def consumer_span(
    topic: str,
    headers: Iterable[tuple[str, bytes | None]] | None,
    *,
    partition: int = -1,
    offset: int = -1,
    key: bytes | None = None,
) -> Iterator[Span]:
    """A CONSUMER span ``process <topic>`` continuing the trace of the message's ``traceparent``
    header; everything the handler does runs inside it."""
    h = _header_dict(headers)
    with tracer().start_as_current_span(
        f"process {topic}",
        context=context_from_traceparent(h.get("traceparent")),
        kind=SpanKind.CONSUMER,
        attributes={
            "messaging.system": "kafka",
            "messaging.operation.type": "process",
            "messaging.destination.name": topic,
            "messaging.message.id": h.get("ce_id", ""),
            "messaging.destination.partition.id": str(partition),
            "messaging.kafka.offset": offset,
            "messaging.kafka.message.key": (key or b"").decode("utf-8", "replace"),
        },
    ) as span:
        yield span


# --------------------------------------------------------------------------------------------------
# logs
# --------------------------------------------------------------------------------------------------


class JsonFormatter(logging.Formatter):
    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        out = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "service": self.service,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        rid = request_id_var.get()
        if rid:
            out["request_id"] = rid
        trace_id, span_id = trace_ids()
        if trace_id:
            out["trace_id"] = trace_id
            out["span_id"] = span_id
        extra = getattr(record, "fields", None)
        if isinstance(extra, dict):
            out.update(extra)
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


def configure_logging(service: str, level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(service))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("kafka", "aiosmtpd", "mail.log", "httpx", "stripe", "alembic.runtime.migration"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))


# --------------------------------------------------------------------------------------------------
# Prometheus metrics (docs/operations.md "Metrics" lists every one)
# --------------------------------------------------------------------------------------------------

# RED per RPC, recorded by the kit's server stack: rate and errors from the counter
# (grpc_code != OK), duration from the histogram.  Counted in plain numbers per method (no label
# lookup, no lock per call: every call runs on the event loop's thread) and turned into Prometheus
# families when /metrics is scraped (:class:`_RpcCollector`).
RPC_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


class RpcMetrics:
    """One method's counters: calls per status code, and its duration histogram."""

    __slots__ = ("buckets", "codes", "count", "method", "total")

    def __init__(self, method: str) -> None:
        self.method = method
        self.codes: dict[str, int] = {}
        self.buckets = [0] * (len(RPC_BUCKETS) + 1)  # the last one: above the largest bound
        self.count = 0
        self.total = 0.0

    def observe(self, code: str, seconds: float) -> None:
        self.codes[code] = self.codes.get(code, 0) + 1
        self.buckets[bisect.bisect_left(RPC_BUCKETS, seconds)] += 1
        self.count += 1
        self.total += seconds


_RPC_METRICS: dict[str, RpcMetrics] = {}


def rpc_metrics(method: str) -> RpcMetrics:
    """The counters of ``method`` ("/pkg.Service/Method"), one per method per process."""
    found = _RPC_METRICS.get(method)
    if found is None:
        found = _RPC_METRICS[method] = RpcMetrics(method)
    return found


class _RpcCollector(Collector):
    """``grpc_server_handled_total`` {grpc_method, grpc_code} and ``grpc_server_handling_seconds``
    {grpc_method} from :data:`_RPC_METRICS` (methods that have had a call)."""

    def collect(self) -> Iterator[Metric]:
        handled = CounterMetricFamily(
            "grpc_server_handled", "RPCs completed", labels=["grpc_method", "grpc_code"]
        )
        latency = HistogramMetricFamily(
            "grpc_server_handling_seconds", "RPC handling time", labels=["grpc_method"]
        )
        for m in list(_RPC_METRICS.values()):
            if not m.count:
                continue
            for code, n in list(m.codes.items()):
                handled.add_metric([m.method, code], n)
            counts, cumulative, buckets = list(m.buckets), 0, []
            for bound, n in zip((*RPC_BUCKETS, float("inf")), counts, strict=True):
                cumulative += n
                buckets.append((floatToGoString(bound), cumulative))
            latency.add_metric([m.method], buckets, m.total)
        yield handled
        yield latency


REGISTRY.register(_RpcCollector())


OUTBOX_PUBLISHED = Counter("outbox_published_total", "outbox rows published to Kafka and marked sent")
OUTBOX_FAILURES = Counter("outbox_publish_failures_total", "failed outbox publish attempts (retried)")
OUTBOX_REPLAYED = Counter("outbox_replayed_total", "outbox rows re-published because the broker lost them")
OUTBOX_PENDING = Gauge("outbox_unpublished_events", "outbox rows not yet published to Kafka")
OUTBOX_OLDEST_AGE = Gauge(
    "outbox_oldest_unpublished_age_seconds", "age of the oldest unpublished outbox row (0 when none)"
)
EVENTS_CONSUMED = Counter("events_consumed_total", "consumed events by outcome", ["topic", "outcome"])
CONSUMER_LAG = Gauge(
    "kafka_consumer_lag_messages",
    "messages of the assigned partitions not yet consumed (high watermark - position)",
    ["topic", "group"],
)
DLQ_MESSAGES = Gauge(
    "dlq_messages", "messages held in a dead-letter topic (end - beginning offsets)", ["topic"]
)
# what no request path measures, read from the database now and then (petpro.gauges.StateAgeGauges)
REFUNDS_OPEN = Gauge("booking_refunds_open", "refunds owed or in flight, by refund state", ["state"])
REFUND_OLDEST_OPEN_AGE = Gauge(
    "booking_refund_oldest_open_age_seconds",
    "age of the oldest open refund per refund state (since its booking was cancelled; 0 when none)",
    ["state"],
)


def start_metrics_server(port: int, host: str = "127.0.0.1") -> None:
    """Serve /metrics on ``port`` (0 disables)."""
    if port:
        start_http_server(port, addr=host)
