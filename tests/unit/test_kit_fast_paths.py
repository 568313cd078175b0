"""The kit's per-call shortcuts keep what they replace: the text rules compiled per message type answer
as the generic walk does, the RPC counters export the metric families the alerts and tests read, and a
span the sampler would drop still carries the caller's trace on."""

from __future__ import annotations

from google.protobuf import timestamp_pb2
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import SpanKind
from prometheus_client import generate_latest

from petpro import telemetry
from petpro.textcheck import text_check, text_violations
from petpro_api.auth.v1 import auth_pb2
from petpro_api.booking.v1 import booking_pb2
from petpro_api.notification.v1 import notification_pb2


def test_compiled_text_check_answers_as_the_generic_walk() -> None:
    messages = [
        booking_pb2.ReserveSlotRequest(owner_name="Bad\x00name", owner_email="a@b.c", request_id="r\x07"),
        auth_pb2.User(name="ok", clinic_ids=["fine", "tab\there", "nul\x00"]),
        notification_pb2.ListNotificationsResponse(
            notifications=[
                notification_pb2.Notification(title="ok", data={"k\x01": "v", "k": "v\x7f"}),
                notification_pb2.Notification(body="line\nbreak"),
            ]
        ),
        booking_pb2.ReserveSlotRequest(owner_name="all fine"),
    ]
    for msg in messages:
        check = text_check(msg.DESCRIPTOR)
        assert check is not None
        assert check(msg) == text_violations(msg), msg
    assert text_check(timestamp_pb2.Timestamp.DESCRIPTOR) is None  # no string anywhere: nothing to run


def test_rpc_counters_export_the_families_the_alerts_read() -> None:
    method = "/petpro.test.v1.Fast/Path"
    m = telemetry.rpc_metrics(method)
    m.observe("OK", 0.003)
    m.observe("OK", 20.0)
    m.observe("ABORTED", 0.0005)
    text = generate_latest().decode()
    assert f'grpc_server_handled_total{{grpc_code="OK",grpc_method="{method}"}} 2.0' in text or (
        f'grpc_server_handled_total{{grpc_method="{method}",grpc_code="OK"}} 2.0' in text
    )
    assert f'grpc_server_handling_seconds_bucket{{grpc_method="{method}",le="0.001"}} 1.0' in text
    assert f'grpc_server_handling_seconds_bucket{{grpc_method="{method}",le="0.005"}} 2.0' in text
    assert f'grpc_server_handling_seconds_bucket{{grpc_method="{method}",le="+Inf"}} 3.0' in text
    assert f'grpc_server_handling_seconds_count{{grpc_method="{method}"}} 3.0' in text


def test_a_dropped_span_is_made_without_the_sdk_and_carries_the_trace_on(monkeypatch) -> None:
    monkeypatch.setattr(telemetry, "_sampling", "off")  # as setup_tracing sets it without an exporter
    parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00"
    span, token = telemetry.enter_server_span("/petpro.test.v1.Fast/Path", {"traceparent": parent})
    try:
        ctx = span.get_span_context()
        assert not span.is_recording() and ctx.trace_id == 0x0AF7651916CD43DD8448EB211C80319C
        assert ctx.span_id != 0xB7AD6B7169203331  # a span of its own, as the SDK's would be
        assert telemetry.current_traceparent().startswith("00-0af7651916cd43dd8448eb211c80319c-")
        md: list[tuple[str, str]] = []
        telemetry.inject_traceparent(telemetry.start_rpc_span("/x.Y/Z", SpanKind.CLIENT), md)
        assert dict(md)["traceparent"].startswith("00-0af7651916cd43dd8448eb211c80319c-")
    finally:
        telemetry.exit_server_span((span, token), None)
    # no parent: a new trace, still not recorded; a sampled caller: the SDK records
    root, token = telemetry.enter_server_span("/petpro.test.v1.Fast/Path", {})
    telemetry.exit_server_span((root, token), None)
    assert root.get_span_context().is_valid and not root.is_recording()
    monkeypatch.setattr(telemetry, "_sampling", "")
    provider = TracerProvider()
    monkeypatch.setattr(telemetry, "tracer", lambda: telemetry.FastTracer(provider.get_tracer("t")))
    sampled = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    span, token = telemetry.enter_server_span("/petpro.test.v1.Fast/Path", {"traceparent": sampled})
    telemetry.exit_server_span((span, token), None)
    assert span.get_span_context().trace_id == 0x0AF7651916CD43DD8448EB211C80319C
    assert isinstance(span, trace.Span) and span.get_span_context().trace_flags.sampled
