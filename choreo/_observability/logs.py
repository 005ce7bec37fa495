"""Log lines that name their trace: from a log line to the whole saga in Jaeger, and back.

The filter stamps every record with the current span's ids, so a warning
logged while handling a record (a retry, a dead letter) carries the trace of
that record. ``CHOREO_LOG_FORMAT=json`` writes one JSON object per line for
log shippers; the default text format appends the ids when there are any.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime

from opentelemetry import trace

from choreo._errors import ConfigError

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s%(trace_ids)s"
FORMATS = ("text", "json")


class TraceContextFilter(logging.Filter):
    """Adds ``trace_id`` and ``span_id`` (hex, empty outside a span) and ``trace_ids`` (text)."""

    def filter(self, record: logging.LogRecord) -> bool:
        context = trace.get_current_span().get_span_context()
        trace_id = span_id = trace_ids = ""
        if context.is_valid:
            trace_id = format(context.trace_id, "032x")
            span_id = format(context.span_id, "016x")
            trace_ids = f" trace_id={trace_id} span_id={span_id}"
        record.__dict__.update(trace_id=trace_id, span_id=span_id, trace_ids=trace_ids)
        return True


class JsonFormatter(logging.Formatter):
    """One object per line: time (UTC, ISO 8601), level, logger, message, ids, exception."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, str] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        trace_id = getattr(record, "trace_id", "")
        if trace_id:
            entry["trace_id"] = trace_id
            entry["span_id"] = getattr(record, "span_id", "")
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def log_handler(log_format: str) -> logging.Handler:
    """A stderr handler with the trace filter, formatting as ``text`` or ``json``."""
    if log_format not in FORMATS:
        raise ConfigError(f"CHOREO_LOG_FORMAT={log_format!r}: use one of {', '.join(FORMATS)}")
    handler = logging.StreamHandler()
    handler.addFilter(TraceContextFilter())
    handler.setFormatter(
        JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT)
    )
    return handler


def install_logging(log_format: str = "text", level: int = logging.INFO) -> None:
    """Configure the root logger, as ``logging.basicConfig`` would, with trace-aware output."""
    logging.basicConfig(level=level, handlers=[log_handler(log_format)])
