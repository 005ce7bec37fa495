"""A saga's trace, fetched from Jaeger's query API and drawn here as a waterfall.

Jaeger built from the Go module proxy (the local stack's) has no UI assets: its pages show
"This is not the Jaeger UI you are looking for!". The query API works all the same, so the
console draws the trace itself: one row per span in parent order, a bar at its place in time,
its service, operation and duration, and its span events (retries, dead letters, the saga
tracker's emitted compensations) under it.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import Any

from choreo._console.html import esc

PLACEHOLDER = "This is not the Jaeger UI you are looking for"
TIMEOUT_S = 5.0


def jaeger_ui_present(base: str) -> bool:
    """Whether ``base`` serves Jaeger's real UI (False for the placeholder or no answer)."""
    try:
        with urllib.request.urlopen(base.rstrip("/") + "/", timeout=TIMEOUT_S) as answer:
            return PLACEHOLDER not in answer.read(65536).decode(errors="replace")
    except (OSError, urllib.error.URLError):
        return False


def trace_id_of(traceparent: str | None) -> str | None:
    """The trace id of a W3C ``traceparent`` (``00-<32 hex>-<16 hex>-<flags>``)."""
    parts = (traceparent or "").split("-")
    if len(parts) == 4 and len(parts[1]) == 32 and all(c in "0123456789abcdef" for c in parts[1]):
        return parts[1]
    return None


@dataclass
class Span:
    span_id: str
    parent: str | None
    service: str
    operation: str
    start_us: int
    duration_us: int
    tags: dict[str, Any]
    events: list[dict[str, Any]]
    children: list[Span] = field(default_factory=list)


def fetch(base: str, trace_id: str) -> list[Span]:
    """The trace's spans; an error naming Jaeger's address when it cannot be read."""
    url = f"{base.rstrip('/')}/api/traces/{trace_id}"
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_S) as answer:
            data = json.loads(answer.read())
    except urllib.error.HTTPError as error:
        if error.code == 404:
            return []
        raise OSError(f"Jaeger at {base} answered {error.code} for trace {trace_id}") from None
    except (OSError, ValueError) as error:
        raise OSError(f"cannot read trace {trace_id} from Jaeger at {base}: {error}") from None
    return parse(data)


def parse(data: dict[str, Any]) -> list[Span]:
    spans: list[Span] = []
    for trace in data.get("data") or []:
        services = {
            pid: str(process.get("serviceName", "?"))
            for pid, process in (trace.get("processes") or {}).items()
        }
        for raw in trace.get("spans") or []:
            parents = [
                r.get("spanID")
                for r in raw.get("references") or []
                if r.get("refType") == "CHILD_OF"
            ]
            spans.append(
                Span(
                    span_id=str(raw.get("spanID")),
                    parent=parents[0] if parents else None,
                    service=services.get(raw.get("processID"), "?"),
                    operation=str(raw.get("operationName", "")),
                    start_us=int(raw.get("startTime", 0)),
                    duration_us=int(raw.get("duration", 0)),
                    tags={t.get("key"): t.get("value") for t in raw.get("tags") or []},
                    events=[
                        {f.get("key"): f.get("value") for f in log.get("fields") or []}
                        for log in raw.get("logs") or []
                    ],
                )
            )
    return spans


def ordered(spans: list[Span]) -> list[tuple[int, Span]]:
    """(depth, span) in waterfall order: each span after its parent, siblings by start time.
    A span whose parent is not in the trace (not exported yet, or lost) starts a tree."""
    by_id = {s.span_id: s for s in spans}
    roots = []
    for span in sorted(spans, key=lambda s: s.start_us):
        parent = by_id.get(span.parent or "")
        if parent is None:
            roots.append(span)
        else:
            parent.children.append(span)
    out: list[tuple[int, Span]] = []
    stack = [(0, root) for root in reversed(roots)]
    while stack:
        depth, span = stack.pop()
        out.append((depth, span))
        stack.extend((depth + 1, child) for child in reversed(span.children))
    return out


def waterfall(spans: list[Span]) -> str:
    if not spans:
        return '<p class="muted">Jaeger has no spans of this trace (yet).</p>'
    begin = min(s.start_us for s in spans)
    end = max(s.start_us + s.duration_us for s in spans)
    width = max(end - begin, 1)
    services = sorted({s.service for s in spans})
    rows = []
    for depth, span in ordered(spans):
        left = 100 * (span.start_us - begin) / width
        size = max(100 * span.duration_us / width, 0.2)
        kind = "error" if span.tags.get("error") else ""
        if "choreo.saga.decision" in span.tags:
            kind = "tracker"
        decision = " ".join(
            f"{esc(k.removeprefix('choreo.saga.'))}={esc(span.tags[k])}"
            for k in ("choreo.saga.step", "choreo.saga.decision", "choreo.saga.status")
            if k in span.tags
        )
        events = "".join(f"<div>&#8226; {_event(e)}</div>" for e in span.events)
        rows.append(
            f'<tr class="span" data-service="{esc(span.service)}">'
            f'<td style="padding-left:{8 + 14 * depth}px">{esc(span.operation)}'
            f'<div class="events">{decision}{events}</div></td>'
            f"<td>{esc(span.service)}</td>"
            f'<td class="num">{span.duration_us / 1000:.1f} ms</td>'
            f'<td><div class="bar"><span class="{kind}" '
            f'style="left:{left:.2f}%;width:{size:.2f}%"></span></div></td></tr>'
        )
    return (
        f"<p>{len(spans)} spans from {len(services)} services: {esc(', '.join(services))}; "
        f"{(end - begin) / 1000:.1f} ms from first to last</p>"
        '<table class="waterfall"><tr><th>operation (indented under its parent)</th>'
        "<th>service</th><th>duration</th><th>when</th></tr>" + "".join(rows) + "</table>"
    )


def _event(fields: dict[str, Any]) -> str:
    name = fields.pop("event", "event")
    rest = ", ".join(f"{k}={v}" for k, v in fields.items())
    return f"<b>{esc(name)}</b> {esc(rest)}"
