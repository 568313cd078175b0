"""The kit's tracing: gRPC server/client spans chain across a call, the Kafka hop keeps the trace
(outbox publish → consume), background polling makes no traces, logs carry the trace id, and the
exporters follow the environment."""

from __future__ import annotations

import itertools
import json
import logging

import grpc
import pytest
from opentelemetry import propagate, trace
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from petpro import events, grpc_client, grpc_server, telemetry
from petpro.settings import ServiceSettings
from petpro_api.auth.v1 import auth_pb2, auth_pb2_grpc


@pytest.fixture(scope="module")
def memory() -> InMemorySpanExporter:
    exporter = InMemorySpanExporter()
    provider = telemetry.setup_tracing("unit-test", exporters=[])  # the process' one provider
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return exporter


@pytest.fixture
def spans(memory: InMemorySpanExporter):
    memory.clear()

    def finished():
        return list(memory.get_finished_spans())

    return finished


def _hex(span_id: int) -> str:
    return format(span_id, "016x")


class _Settings(ServiceSettings):
    component = "auth"


class _Jwks(auth_pb2_grpc.AuthServiceServicer):
    async def GetJwks(self, request, context):
        with telemetry.tracer().start_as_current_span("inside the handler"):
            return auth_pb2.GetJwksResponse(keys=[auth_pb2.Jwk(kid=telemetry.trace_ids()[0])])


async def test_a_grpc_call_is_one_trace_client_span_server_span_handler_span(spans):
    app = grpc_server.App(
        name="t",
        settings=_Settings(grace_seconds=1),
        services=[
            grpc_server.Registration(
                auth_pb2_grpc.add_AuthServiceServicer_to_server, _Jwks(), "petpro.auth.v1.AuthService"
            )
        ],
    )
    running = await grpc_server.start(app, port=0)
    channel = grpc_client.channel(f"127.0.0.1:{running.port}")
    try:
        with telemetry.tracer().start_as_current_span("request", kind=SpanKind.SERVER) as outer:
            reply = await auth_pb2_grpc.AuthServiceStub(channel).GetJwks(auth_pb2.GetJwksRequest())
    finally:
        await channel.close()
        await running.stop(0)
    trace_id = format(outer.get_span_context().trace_id, "032x")
    assert reply.keys[0].kid == trace_id  # the handler ran inside the caller's trace
    by_name = {s.name: s for s in spans()}
    kinds = {(s.name, s.kind) for s in spans()}
    assert ("/petpro.auth.v1.AuthService/GetJwks", SpanKind.CLIENT) in kinds
    assert ("/petpro.auth.v1.AuthService/GetJwks", SpanKind.SERVER) in kinds
    client = next(s for s in spans() if s.kind == SpanKind.CLIENT)
    server = next(s for s in spans() if s.kind == SpanKind.SERVER and s.name.startswith("/petpro"))
    handler = by_name["inside the handler"]
    assert client.parent.span_id == outer.get_span_context().span_id
    assert server.parent.span_id == client.context.span_id
    assert handler.parent.span_id == server.context.span_id
    assert {s.context.trace_id for s in (client, server, handler)} == {outer.get_span_context().trace_id}


async def test_health_checks_are_not_traced(spans):
    app = grpc_server.App(name="t", settings=_Settings(grace_seconds=1), services=[])
    running = await grpc_server.start(app, port=0)
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    async with grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as ch:
        await health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest())
    await running.stop(0)
    assert [s.name for s in spans() if "Health" in s.name] == []


def test_the_kafka_hop_keeps_the_trace_outbox_row_to_publish_to_consume(spans):
    tracer = telemetry.tracer()
    with tracer.start_as_current_span("ConfirmBooking", kind=SpanKind.SERVER) as request:
        stored = telemetry.current_traceparent()  # what the handler writes with the outbox row
    assert stored.startswith(f"00-{format(request.get_span_context().trace_id, '032x')}-")

    publish = telemetry.start_producer_span(
        "booking.created", parent_traceparent=stored, key="b1", message_id="e1"
    )
    headers = events.cloudevent_headers(
        "e1", "petpro.booking.created", "/test", traceparent=telemetry.traceparent_of(publish)
    )
    publish.end()
    with (
        telemetry.consumer_span("booking.created", headers, partition=2, offset=7, key=b"b1"),
        tracer.start_as_current_span("smtp send", kind=SpanKind.CLIENT),
    ):
        pass

    by_name = {s.name: s for s in spans()}
    chain = [
        by_name[n]
        for n in ("ConfirmBooking", "publish booking.created", "process booking.created", "smtp send")
    ]
    assert {s.context.trace_id for s in chain} == {request.get_span_context().trace_id}
    for parent, child in itertools.pairwise(chain):
        assert child.parent.span_id == parent.context.span_id
    assert chain[1].kind == SpanKind.PRODUCER and chain[2].kind == SpanKind.CONSUMER
    assert chain[2].attributes["messaging.message.id"] == "e1"
    assert chain[2].attributes["messaging.kafka.offset"] == 7


def test_a_message_without_traceparent_starts_its_own_trace(spans):
    with telemetry.consumer_span("booking.created", [("ce_id", b"e2")]) as span:
        assert span.get_span_context().is_valid
    (consumed,) = spans()
    assert consumed.parent is None


def test_calls_outside_any_request_are_not_recorded_but_work_roots_are(spans):
    tracer = telemetry.tracer()
    with tracer.start_as_current_span("SELECT", kind=SpanKind.CLIENT) as polling:
        assert not polling.is_recording()  # the relay's / sweepers' polling
    with (
        tracer.start_as_current_span("POST /webhooks/stripe", kind=SpanKind.SERVER),
        tracer.start_as_current_span("SELECT", kind=SpanKind.CLIENT) as inside,
    ):
        assert inside.is_recording()
    assert [s.name for s in spans()] == ["SELECT", "POST /webhooks/stripe"]


def test_log_lines_carry_the_trace_and_span_id(memory):
    formatter = telemetry.JsonFormatter("svc")
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "hello", None, None)
    assert "trace_id" not in json.loads(formatter.format(record))
    with telemetry.tracer().start_as_current_span("request", kind=SpanKind.SERVER) as span:
        line = json.loads(formatter.format(record))
    ctx = span.get_span_context()
    assert line["trace_id"] == format(ctx.trace_id, "032x")
    assert line["span_id"] == _hex(ctx.span_id)


def test_exporters_follow_the_environment(tmp_path):
    from opentelemetry.exporter.otlp.json.file.trace_exporter import FileSpanExporter
    from opentelemetry.exporter.otlp.json.http.trace_exporter import OTLPSpanExporter

    assert telemetry.exporters_from_env("svc", {}) == []
    (otlp,) = telemetry.exporters_from_env("svc", {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"})
    assert isinstance(otlp, OTLPSpanExporter)
    assert (
        telemetry.exporters_from_env(
            "svc",
            {
                "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318",
                "PETPRO_TRACES_DIR": str(tmp_path / "off"),
                "OTEL_TRACES_EXPORTER": "none",
            },
        )
        == []
    )
    (file,) = telemetry.exporters_from_env("svc", {"PETPRO_TRACES_DIR": str(tmp_path / "traces")})
    assert isinstance(file, FileSpanExporter)
    file.shutdown()
    assert [p.name.split("-")[0] for p in (tmp_path / "traces").iterdir()] == ["svc"]


def test_the_provider_names_the_service(memory):
    assert trace.get_tracer_provider().resource.attributes["service.name"] == "unit-test"


def test_without_an_exporter_spans_are_not_recorded_but_trace_ids_still_flow() -> None:
    """The deployed default (no exporter): a trace started here is not recorded, yet has a trace id
    for the logs and the traceparent passed on; a caller's sampled trace is still recorded."""
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags, set_span_in_context

    tracer_ = TracerProvider(sampler=telemetry._unexported_sampler()).get_tracer("t")
    with tracer_.start_as_current_span("root", kind=SpanKind.SERVER) as root:
        assert not root.is_recording()
        assert root.get_span_context().is_valid and not root.get_span_context().trace_flags.sampled
        carrier: dict[str, str] = {}
        propagate.inject(carrier)
        assert int(carrier["traceparent"].rsplit("-", 1)[1], 16) & 1 == 0  # passed on, not sampled
    sampled = SpanContext(
        trace_id=0x1234, span_id=0x99, is_remote=True, trace_flags=TraceFlags(TraceFlags.SAMPLED)
    )
    with tracer_.start_as_current_span(
        "child", context=set_span_in_context(NonRecordingSpan(sampled)), kind=SpanKind.SERVER
    ) as child:
        assert child.is_recording() and child.get_span_context().trace_id == 0x1234


async def test_an_http_request_is_a_server_span_continuing_the_callers_trace(spans):
    """The edge's HTTP app (webhooks, dashboard): a SERVER span per request named like OpenTelemetry's
    ASGI middleware names it, under the caller's traceparent, current while the app runs, with the
    response's status; health and metrics are not traced."""
    inside: list[trace.Span] = []

    async def app(scope, receive, send):
        inside.append(trace.get_current_span())
        with telemetry.tracer().start_as_current_span("SELECT", kind=SpanKind.CLIENT):
            pass
        await send({"type": "http.response.start", "status": 503, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    middleware_class, options = telemetry.asgi_middleware()
    wrapped = middleware_class(app, **options)
    sent: list[dict] = []

    async def send(message):
        sent.append(message)

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    caller = "00-0000000000000000000000000000abcd-00000000000000ef-01"
    scope = {"type": "http", "method": "POST", "path": "/webhooks/stripe", "scheme": "http",
             "headers": [(b"traceparent", caller.encode()), (b"content-type", b"application/json")]}  # fmt: skip
    await wrapped(scope, receive, send)
    await wrapped({**scope, "method": "GET", "path": "/healthz", "headers": []}, receive, send)

    assert [m["type"] for m in sent] == ["http.response.start", "http.response.body"] * 2
    select, server = spans()
    assert server.name == "POST /webhooks/stripe" and server.kind == SpanKind.SERVER
    assert server.context.trace_id == 0xABCD and server.parent.span_id == 0xEF
    assert select.parent.span_id == server.context.span_id
    assert inside[0].get_span_context().span_id == server.context.span_id
    assert server.attributes["http.response.status_code"] == 503
    assert not server.status.is_ok
    assert not inside[1].is_recording()  # /healthz: no span of its own
