"""Traces: one business flow is one trace, across services and Kafka hops.

Each consumed record gets a CONSUMER span whose parent is the context its
producer left in the headers, extracted before the span starts. The span is
the current context while the handler runs and its events are sent, so
``inject`` writes it into every emitted event and dead letter, and the next
service's span becomes its child. A batch gets one span, child of its first
record's context and linked to every record's, so batching never splits a
trace. An event published outside any handler (``choreo.Publisher``) gets a
short PRODUCER span of its own: the root of the flow.

Attributes follow OpenTelemetry's messaging semantic conventions (the
v1.27+ names: ``messaging.destination.partition.id``,
``messaging.operation.type``, ``messaging.consumer.group.name``), without the
opt-in ones: the SDK validates each attribute on every span, about a
microsecond apiece, and a span per record is already the bulk of the cost.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from contextvars import Token

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter
from opentelemetry.trace import Link, Span, SpanKind, Status, StatusCode
from opentelemetry.util.types import AttributeValue

from choreo import _headers
from choreo._errors import ConfigError
from choreo._observability import carrier
from choreo._observability.common import error_type, resource, short_type
from choreo._runtime.dead_letters import dlq_topic
from choreo._runtime.retry_topics import retry_state
from choreo._service import Handler
from choreo._transport.base import Headers, Record

SYSTEM = "messaging.system"
DESTINATION = "messaging.destination.name"
PARTITION = "messaging.destination.partition.id"
OFFSET = "messaging.kafka.offset"
KEY = "messaging.kafka.message.key"
TOMBSTONE = "messaging.kafka.message.tombstone"
MESSAGE_ID = "messaging.message.id"
GROUP = "messaging.consumer.group.name"
OPERATION_TYPE = "messaging.operation.type"
OPERATION_NAME = "messaging.operation.name"
BATCH_COUNT = "messaging.batch.message_count"
ERROR_TYPE = "error.type"
CORRELATION_ID = "choreo.correlation_id"
"""The saga id: search a trace by business transaction."""
ATTEMPTS = "choreo.attempts"
"""Tries so far; set once a try failed and another follows."""
ATTEMPT = "choreo.attempt"
"""On a retry's exception event: which try failed."""
DLQ_REASON = "choreo.dlq.reason"
RETRY_LEVEL = "choreo.retry.level"
"""The retry topic's level a record was sent to wait in."""

Attributes = dict[str, AttributeValue]

_IN_SCOPE = otel_context.create_key("choreo-consume-scope")
"""Marks the context a scope attaches: ``inject`` inside it needs no producer span."""


class Tracing:
    """The ``Instrumentation`` that turns records into spans of ``provider``.

    ``group_id`` is None for a publisher, which consumes nothing.
    """

    def __init__(
        self, service: str, provider: trace.TracerProvider, group_id: str | None = None
    ) -> None:
        self.service = service
        self.tracer = provider.get_tracer("choreo")
        self._group = group_id
        self._names: dict[int, str] = {}

    def _name(self, handler: Handler) -> str:
        """``inventory handle OrderPlaced``, built once per handler."""
        name = self._names.get(id(handler))
        if name is None:
            what = short_type(handler.event.event_type) if handler.event else handler.topic
            name = self._names[id(handler)] = f"{self.service} handle {what}"
        return name

    def messaging_attributes(self, topic: str, partition: int, verb: str) -> Attributes:
        attributes: Attributes = {
            SYSTEM: "kafka",
            DESTINATION: topic,
            PARTITION: str(partition),
            OPERATION_TYPE: "process",
            OPERATION_NAME: verb,
        }
        if self._group is not None:
            attributes[GROUP] = self._group
        return attributes

    def consume(self, record: Record, handler: Handler | None) -> SpanScope:
        parent = carrier.extract(record.headers)
        if handler is None:  # undecodable: it will only be dead-lettered
            name, verb = f"{self.service} receive {record.topic}", "receive"
        else:
            name, verb = self._name(handler), "handle"
        attributes = self.messaging_attributes(record.topic, record.partition, verb)
        attributes[OFFSET] = record.offset
        if record.key is not None:
            attributes[KEY] = record.key.decode("utf-8", "replace")
        if record.value is None:
            attributes[TOMBSTONE] = True
        event_id = record.header(_headers.ID)
        if event_id is not None:
            attributes[MESSAGE_ID] = event_id.decode("utf-8", "replace")
        correlation = record.header(_headers.CORRELATION)
        if correlation is not None:
            attributes[CORRELATION_ID] = correlation.decode("utf-8", "replace")
        span = self.tracer.start_span(name, parent, SpanKind.CONSUMER, attributes)
        return SpanScope(self, span, parent, record)

    def consume_batch(self, records: Sequence[Record], handler: Handler) -> SpanScope:
        contexts = [carrier.extract(record.headers) for record in records]
        producers = (trace.get_current_span(c).get_span_context() for c in contexts)
        links = [Link(producer) for producer in producers if producer.is_valid]
        first = records[0]
        attributes = self.messaging_attributes(first.topic, first.partition, "handle")
        attributes[BATCH_COUNT] = len(records)
        span = self.tracer.start_span(
            self._name(handler), contexts[0], SpanKind.CONSUMER, attributes, links
        )
        return SpanScope(self, span, contexts[0], first)

    def skipped(self, record: Record, event_type: str) -> None:
        """No span: nothing is done with a record this service does not handle."""

    def inject(self, headers: Headers) -> None:
        """Inside a scope: the current context. Elsewhere: a PRODUCER span's, ended at once.

        The producer span is a child of whatever is current (say, the web
        request that publishes the first event of a saga).
        """
        if otel_context.get_value(_IN_SCOPE) is not None:
            carrier.inject(headers)
            return
        source = _header(headers, _headers.SOURCE) or self.service
        event_type = short_type(_header(headers, _headers.TYPE) or "event")
        attributes: Attributes = {
            SYSTEM: "kafka",
            OPERATION_TYPE: "send",
            OPERATION_NAME: "publish",
        }
        event_id = _header(headers, _headers.ID)
        if event_id is not None:
            attributes[MESSAGE_ID] = event_id
        correlation = _header(headers, _headers.CORRELATION)
        if correlation is not None:
            attributes[CORRELATION_ID] = correlation
        span = self.tracer.start_span(
            f"{source} publish {event_type}", kind=SpanKind.PRODUCER, attributes=attributes
        )
        try:
            carrier.inject(headers, trace.set_span_in_context(span))
        finally:
            span.end()


class SpanScope:
    """One consume span from routing to the record's fate, current all along."""

    __slots__ = ("_dead_letter", "_record", "_span", "_token", "_tracing")

    def __init__(self, tracing: Tracing, span: Span, parent: Context, record: Record) -> None:
        self._tracing = tracing
        self._span = span
        self._record = record  # a batch's first: they share a partition
        self._dead_letter: tuple[Span, Token[Context]] | None = None
        current = otel_context.set_value(_IN_SCOPE, True, trace.set_span_in_context(span, parent))
        self._token = otel_context.attach(current)

    def retrying(self, attempt: int, error: BaseException) -> None:
        self._span.record_exception(error, {ATTEMPT: attempt})
        self._span.set_attribute(ATTEMPTS, attempt + 1)

    def delayed(self, level: int, error: BaseException) -> None:
        """The try that failed was recorded by ``retrying``; say where the record waits."""
        self._span.set_attribute(RETRY_LEVEL, level)

    def parked(self, reason: str, error: BaseException) -> None:
        """Open the dead-letter span; current until ``end``, so the dead letter carries it."""
        if self._dead_letter is not None:
            return
        self._span.set_status(Status(StatusCode.ERROR, f"dead-lettered: {reason}"))
        self._span.set_attribute(DLQ_REASON, reason)
        tracing = self._tracing
        topic = dlq_topic(tracing.service, retry_state(self._record).origin_topic)
        span = tracing.tracer.start_span(
            f"{tracing.service} dead-letter {topic}",
            kind=SpanKind.PRODUCER,
            attributes={
                SYSTEM: "kafka",
                DESTINATION: topic,
                OPERATION_TYPE: "send",
                OPERATION_NAME: "dead-letter",
                DLQ_REASON: reason,
                ERROR_TYPE: error_type(error),
            },
        )
        span.set_status(Status(StatusCode.ERROR, reason))
        self._dead_letter = (span, otel_context.attach(trace.set_span_in_context(span)))

    def end(self, error: BaseException | None) -> None:
        if self._dead_letter is not None:
            span, token = self._dead_letter
            otel_context.detach(token)
            span.end()
        span = self._span
        if error is not None:
            span.record_exception(error)
            span.set_attribute(ERROR_TYPE, error_type(error))
            span.set_status(Status(StatusCode.ERROR, f"{type(error).__name__}: {error}"))
        otel_context.detach(self._token)
        span.end()


def _header(headers: Headers, name: str) -> str | None:
    found = carrier.GETTER.get(headers, name)
    return found[0] if found else None


def tracer_provider_from_env(service: str) -> TracerProvider | None:
    """A provider exporting in batches as the ``OTEL_*`` variables say, or None: tracing off.

    On when ``OTEL_TRACES_EXPORTER`` names an exporter (``otlp``, ``console``)
    or, with it unset, when an OTLP endpoint is set; ``none`` turns it off.
    The OTLP exporters read their endpoint, headers, timeout and certificates
    from the standard variables themselves; the sampler and span limits come
    from ``OTEL_TRACES_SAMPLER`` and friends through the SDK.
    """
    names = [n.strip().lower() for n in os.environ.get("OTEL_TRACES_EXPORTER", "").split(",")]
    names = [n for n in names if n]
    if not names:
        endpoints = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        if not any(os.environ.get(name) for name in endpoints):
            return None
        names = ["otlp"]
    if "none" in names:
        return None
    exporters = [_exporter(name) for name in names]
    provider = TracerProvider(resource=resource(service))
    for exporter in exporters:
        provider.add_span_processor(BatchSpanProcessor(exporter))
    return provider


def _exporter(name: str) -> SpanExporter:
    if name == "console":
        return ConsoleSpanExporter()
    if name != "otlp":
        raise ConfigError(f"OTEL_TRACES_EXPORTER={name!r}: choreo knows otlp, console and none")
    protocol = (
        os.environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
        or os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL")
        or "http/protobuf"
    )
    if protocol == "grpc":  # imported only when chosen: grpc is slow to import
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
            OTLPSpanExporter as GrpcExporter,
        )

        return GrpcExporter()
    if protocol == "http/protobuf":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
            OTLPSpanExporter as HttpExporter,
        )

        return HttpExporter()
    raise ConfigError(
        f"OTEL_EXPORTER_OTLP_PROTOCOL={protocol!r}: "
        "choreo exports traces over grpc or http/protobuf"
    )
