"""JSON logs carrying request and trace ids, W3C trace context helpers, Prometheus metrics."""

from __future__ import annotations

import contextvars
import json
import logging
import os
import re
import sys
import time
from dataclasses import dataclass

from prometheus_client import Counter, Histogram, start_http_server

request_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="")
traceparent_var: contextvars.ContextVar[str] = contextvars.ContextVar("traceparent", default="")

_TRACEPARENT = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")


@dataclass(frozen=True)
class TraceContext:
    trace_id: str
    span_id: str
    flags: str = "01"

    def header(self) -> str:
        return f"00-{self.trace_id}-{self.span_id}-{self.flags}"

    def child(self) -> TraceContext:
        return TraceContext(self.trace_id, os.urandom(8).hex(), self.flags)


def parse_traceparent(value: str | None) -> TraceContext | None:
    m = _TRACEPARENT.match((value or "").strip().lower())
    if not m or m.group(1) == "0" * 32 or m.group(2) == "0" * 16:
        return None
    return TraceContext(m.group(1), m.group(2), m.group(3))


def continue_or_start_trace(value: str | None) -> TraceContext:
    """A child span of the incoming ``traceparent`` or, when absent/invalid, a new trace."""
    parent = parse_traceparent(value)
    return parent.child() if parent else TraceContext(os.urandom(16).hex(), os.urandom(8).hex())


def current_traceparent() -> str:
    return traceparent_var.get()


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
        tp = parse_traceparent(traceparent_var.get())
        if tp:
            out["trace_id"] = tp.trace_id
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


RPC_HANDLED = Counter("grpc_server_handled_total", "RPCs completed", ["grpc_method", "grpc_code"])
RPC_LATENCY = Histogram(
    "grpc_server_handling_seconds",
    "RPC handling time",
    ["grpc_method"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)


OUTBOX_PUBLISHED = Counter("outbox_published_total", "outbox rows published to Kafka and marked sent")
OUTBOX_FAILURES = Counter("outbox_publish_failures_total", "failed outbox publish attempts (retried)")
OUTBOX_REPLAYED = Counter("outbox_replayed_total", "outbox rows re-published because the broker lost them")
EVENTS_CONSUMED = Counter("events_consumed_total", "consumed events by outcome", ["topic", "outcome"])


def start_metrics_server(port: int, host: str = "127.0.0.1") -> None:
    """Serve /metrics on ``port`` (0 disables)."""
    if port:
        start_http_server(port, addr=host)
