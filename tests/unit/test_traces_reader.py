"""``petpro traces`` reads what the file exporter writes: OTLP-JSON lines → spans → one tree per trace."""

from __future__ import annotations

import io
from pathlib import Path

from opentelemetry.exporter.otlp.json.file.trace_exporter import FileSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import SpanKind, StatusCode

from petpro_dev.devstack.traces import (
    ancestry,
    by_trace,
    load_spans,
    parse_line,
    render_tree,
    roots,
    summary_rows,
)


def _write(service: str, path: Path, build) -> None:  # type: ignore[no-untyped-def]
    stream = io.StringIO()
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    provider.add_span_processor(SimpleSpanProcessor(FileSpanExporter(stream=stream)))
    build(provider.get_tracer("t"))
    provider.shutdown()
    path.write_text(stream.getvalue())


def test_spans_of_two_processes_join_into_one_tree(tmp_path):
    carrier: dict[str, object] = {}

    def edge(tracer):  # type: ignore[no-untyped-def]
        with (
            tracer.start_as_current_span("POST /webhooks/stripe", kind=SpanKind.SERVER) as root,
            tracer.start_as_current_span("ConfirmBooking", kind=SpanKind.CLIENT) as call,
        ):
            carrier["root"], carrier["call"] = root, call

    _write("edge", tmp_path / "edge-1.jsonl", edge)
    from opentelemetry import trace

    parent = trace.set_span_in_context(carrier["call"])  # type: ignore[arg-type]

    def booking(tracer):  # type: ignore[no-untyped-def]
        with tracer.start_as_current_span("ConfirmBooking", context=parent, kind=SpanKind.SERVER) as s:
            s.set_attribute("petpro.booking_id", "b-1")
            s.set_status(StatusCode.ERROR)

    _write("booking_svc", tmp_path / "booking_svc-2.jsonl", booking)
    (tmp_path / "notif-3.jsonl").write_text('{"resourceSpans": [')  # a line still being written

    spans = load_spans(tmp_path)
    (trace_spans,) = by_trace(spans).values()
    (root,) = roots(trace_spans)
    assert (root.service, root.kind, root.name, root.parent_id) == (
        "edge",
        "server",
        "POST /webhooks/stripe",
        "",
    )
    server = next(s for s in trace_spans if s.service == "booking_svc")
    assert server.attributes["petpro.booking_id"] == "b-1" and server.status == "error"
    assert [s.name for s in ancestry(trace_spans, server)] == [
        "ConfirmBooking",
        "ConfirmBooking",
        "POST /webhooks/stripe",
    ]
    tree = render_tree(trace_spans).splitlines()
    assert [line[27:] for line in tree] == [  # after the offset and duration columns
        "edge server POST /webhooks/stripe",
        "  edge client ConfirmBooking",
        "    booking_svc server ConfirmBooking !",
    ]
    (row,) = summary_rows(by_trace(spans))
    assert row[2] == "edge: POST /webhooks/stripe" and row[3] == "booking_svc,edge" and row[4] == "3"


def test_a_span_whose_parent_was_not_recorded_is_shown_as_a_root():
    line = (
        '{"resourceSpans":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"edge"}}]},'
        '"scopeSpans":[{"spans":[{"traceId":"ab","spanId":"01","parentSpanId":"ff","name":"x","kind":2,'
        '"startTimeUnixNano":"1","endTimeUnixNano":"2000001"}]}]}]}'
    )
    spans = parse_line(line)
    assert roots(spans) == spans
    assert "(parent ff not recorded)" in render_tree(spans)
    assert spans[0].ms == 2.0
