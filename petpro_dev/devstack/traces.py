"""Reading the spans the stack's processes write (OTLP-JSON lines under ``$PETPRO_HOME/traces``):
``petpro traces`` lists recent traces and prints one as a tree; the e2e tests use the same reader.

Each line of a ``<service>-<pid>.jsonl`` file is one OTLP ``ExportTraceServiceRequest`` in JSON
(``resourceSpans → scopeSpans → spans``), as written by opentelemetry-exporter-otlp-json-file.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

KINDS = {0: "", 1: "internal", 2: "server", 3: "client", 4: "producer", 5: "consumer"}


@dataclass(frozen=True)
class SpanRecord:
    service: str
    trace_id: str
    span_id: str
    parent_id: str  # "" for a root span
    name: str
    kind: str
    start_ns: int
    end_ns: int
    attributes: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)
    status: str = ""  # "" (unset), "ok" or "error"

    @property
    def ms(self) -> float:
        return (self.end_ns - self.start_ns) / 1e6


def _value(v: dict[str, Any]) -> Any:
    for key in ("stringValue", "boolValue", "doubleValue"):
        if key in v:
            return v[key]
    if "intValue" in v:
        return int(v["intValue"])
    if "arrayValue" in v:
        return [_value(x) for x in v["arrayValue"].get("values", [])]
    return None


def _attrs(items: Iterable[dict[str, Any]] | None) -> dict[str, Any]:
    return {a["key"]: _value(a.get("value", {})) for a in items or ()}


def parse_line(line: str) -> list[SpanRecord]:
    out: list[SpanRecord] = []
    doc = json.loads(line)
    for rs in doc.get("resourceSpans", ()):
        service = str(_attrs(rs.get("resource", {}).get("attributes")).get("service.name", "?"))
        for ss in rs.get("scopeSpans", ()):
            for s in ss.get("spans", ()):
                code = (s.get("status") or {}).get("code", 0)
                out.append(
                    SpanRecord(
                        service=service,
                        trace_id=s["traceId"],
                        span_id=s["spanId"],
                        parent_id=s.get("parentSpanId", ""),
                        name=s.get("name", ""),
                        kind=KINDS.get(int(s.get("kind", 0)), ""),
                        start_ns=int(s.get("startTimeUnixNano", 0)),
                        end_ns=int(s.get("endTimeUnixNano", 0)),
                        attributes=_attrs(s.get("attributes")),
                        status={1: "ok", 2: "error"}.get(code if isinstance(code, int) else 0, ""),
                    )
                )
    return out


def load_spans(traces_dir: Path) -> list[SpanRecord]:
    """Every span written so far under ``traces_dir`` (a line being written is skipped)."""
    spans: list[SpanRecord] = []
    for path in sorted(Path(traces_dir).glob("*.jsonl")):
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                spans.extend(parse_line(line))
            except (ValueError, KeyError):
                continue  # a partly written last line
    return spans


def by_trace(spans: Iterable[SpanRecord]) -> dict[str, list[SpanRecord]]:
    out: dict[str, list[SpanRecord]] = defaultdict(list)
    for s in spans:
        out[s.trace_id].append(s)
    return dict(out)


def roots(spans: list[SpanRecord]) -> list[SpanRecord]:
    """Spans of one trace whose parent is not in it (one, for a complete connected trace)."""
    ids = {s.span_id for s in spans}
    return sorted((s for s in spans if not s.parent_id or s.parent_id not in ids), key=lambda s: s.start_ns)


def ancestry(spans: list[SpanRecord], span: SpanRecord) -> list[SpanRecord]:
    """``span`` and its parents up to the root, nearest first."""
    index = {s.span_id: s for s in spans}
    chain = [span]
    while chain[-1].parent_id and chain[-1].parent_id in index and len(chain) <= len(spans):
        chain.append(index[chain[-1].parent_id])
    return chain


def render_tree(spans: list[SpanRecord]) -> str:
    """One trace as an indented tree: offset from the trace start, duration, service, kind, name."""
    children: dict[str, list[SpanRecord]] = defaultdict(list)
    for s in spans:
        children[s.parent_id].append(s)
    top = roots(spans)
    start = min((s.start_ns for s in spans), default=0)
    lines: list[str] = []

    def walk(s: SpanRecord, depth: int) -> None:
        flag = " !" if s.status == "error" else ""
        lines.append(
            f"{(s.start_ns - start) / 1e6:9.1f} ms {s.ms:9.1f} ms  {'  ' * depth}"
            f"{s.service} {s.kind} {s.name}{flag}".rstrip()
        )
        for c in sorted(children.get(s.span_id, ()), key=lambda c: c.start_ns):
            walk(c, depth + 1)

    for r in top:
        if r.parent_id:
            lines.append(f"{'':25}(parent {r.parent_id} not recorded)")
        walk(r, 0)
    return "\n".join(lines)


def summary_rows(traces: dict[str, list[SpanRecord]], limit: int = 20) -> list[tuple[str, ...]]:
    """Latest traces first: id, start, root span, services, span count, duration."""
    import datetime

    rows = []
    for trace_id, spans in traces.items():
        top = roots(spans)
        first = min(s.start_ns for s in spans)
        last = max(s.end_ns for s in spans)
        root = top[0] if top else spans[0]
        services = sorted({s.service for s in spans})
        rows.append(
            (
                first,
                (
                    trace_id,
                    datetime.datetime.fromtimestamp(first / 1e9).strftime("%H:%M:%S.%f")[:-3],
                    f"{root.service}: {root.name}",
                    ",".join(services),
                    str(len(spans)),
                    f"{(last - first) / 1e6:.1f} ms",
                ),
            )
        )
    rows.sort(key=lambda r: r[0], reverse=True)
    return [r for _, r in rows[:limit]]
