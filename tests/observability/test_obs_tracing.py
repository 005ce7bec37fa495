"""Spans on the in-memory transport: parents, names, attributes, retries, dead letters, batches."""

from __future__ import annotations

import asyncio
import logging

import pytest
from builders import placed, received
from obs_kit import (
    FAST,
    Spans,
    isolated_catalog,
    parent_id,
    publisher,
    reserve_stock,
    running,
    span_id,
    trace_id,
    traceparent,
)
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind, StatusCode

import choreo
from choreo import _headers
from choreo._errors import ConfigError
from choreo._observability import Tracing, build_instrumentation, tracer_provider_from_env
from choreo._observability.carrier import GETTER, SETTER, extract
from choreo._observability.tracing import _exporter as span_exporter
from choreo._runtime.dead_letters import dlq_topic
from choreo._transport.base import Headers, Record
from choreo._transport.memory import MemoryTransport
from services import orders
from services.events import OrderPlaced, OrderReceived

PREFIX = "mem"
ORDERS, INVENTORY = f"{PREFIX}.shop.orders", f"{PREFIX}.shop.inventory"
UPSTREAM = b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


OTEL_VARIABLES = (
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_EXPORTER_OTLP_PROTOCOL",
    "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
    "OTEL_TRACES_EXPORTER",
    "OTEL_SERVICE_NAME",
)


def group(name: str) -> str:
    return f"{name}-group"


async def settle(transport: MemoryTransport, *groups: str) -> None:
    await asyncio.sleep(0.01)
    for name in groups:
        while transport.lag(name):
            await asyncio.sleep(0.005)


def attributes(span: ReadableSpan) -> dict[str, object]:
    return dict(span.attributes or {})


def test_the_last_header_value_wins_and_injection_appends() -> None:
    headers: Headers = [("traceparent", b"old"), ("x", b"1"), ("traceparent", UPSTREAM)]
    assert GETTER.get(headers, "traceparent") == [UPSTREAM.decode()]
    assert GETTER.get(headers, "missing") is None
    SETTER.set(headers, "traceparent", "new")
    assert headers[-1] == ("traceparent", b"new") and len(headers) == 4
    context = trace.get_current_span(
        extract([("traceparent", b"stale"), ("traceparent", UPSTREAM)])
    )
    assert format(context.get_span_context().trace_id, "032x") == UPSTREAM.decode().split("-")[1]


def test_a_saga_is_one_trace_each_span_the_child_of_the_one_that_emitted_its_event() -> None:
    spans = Spans()
    catalog = isolated_catalog(PREFIX)
    transport = MemoryTransport()
    placer, reserver = choreo.Service("orders"), choreo.Service("inventory")
    placer.on(OrderReceived)(orders.validate_order)
    reserver.on(OrderPlaced)(reserve_stock)
    instruments = [
        Tracing(s.name, spans.provider(s.name), group(s.name)) for s in (placer, reserver)
    ]

    async def scenario() -> str:
        async with running([placer, reserver], catalog, transport, instruments, group):
            web = publisher(catalog, transport, "web", spans.provider("web"))
            event_id = await web.publish(received("o-77"), correlation_id="saga-77")
            await settle(transport, group("orders"), group("inventory"))
        return event_id

    event_id = asyncio.run(scenario())
    [root] = spans.named("web publish OrderReceived")
    [placing] = spans.named("orders handle OrderReceived")
    [reserving] = spans.named("inventory handle OrderPlaced")
    assert {trace_id(root), trace_id(placing), trace_id(reserving)} == {trace_id(root)}
    assert root.parent is None and root.kind is SpanKind.PRODUCER
    assert parent_id(placing) == span_id(root)
    assert parent_id(reserving) == span_id(placing)
    assert placing.kind is reserving.kind is SpanKind.CONSUMER
    [received_record] = [
        r for r in transport.records(ORDERS) if r.header(_headers.SOURCE) == b"web"
    ]
    assert attributes(placing) == {
        "messaging.system": "kafka",
        "messaging.destination.name": ORDERS,
        "messaging.destination.partition.id": str(received_record.partition),
        "messaging.kafka.offset": received_record.offset,
        "messaging.operation.type": "process",
        "messaging.operation.name": "handle",
        "messaging.consumer.group.name": "orders-group",
        "messaging.kafka.message.key": "o-77",
        "messaging.message.id": event_id,
        "choreo.correlation_id": "saga-77",
    }
    assert attributes(root)["messaging.message.id"] == event_id
    [reserved] = [
        r for r in transport.records(INVENTORY) if r.header(_headers.SOURCE) == b"inventory"
    ]
    assert traceparent(reserved) == (trace_id(root), span_id(reserving))


def test_retries_are_span_events_and_the_dead_letter_hop_is_a_child_span_its_record_points_to() -> (
    None
):
    spans = Spans()
    catalog = isolated_catalog(PREFIX)
    transport = MemoryTransport()
    svc = choreo.Service("picky")

    @svc.on(OrderPlaced, retry=FAST)
    def reserve(event: OrderPlaced, ctx: choreo.Context) -> None:
        raise ValueError(f"cannot reserve {event.order_id} (try {ctx.attempt})")

    async def scenario() -> None:
        tracing = Tracing(svc.name, spans.provider(svc.name), group(svc.name))
        async with running([svc], catalog, transport, [tracing], group):
            await publisher(catalog, transport, "web", spans.provider("web")).publish(placed("o-9"))
            await settle(transport, group(svc.name))

    asyncio.run(scenario())
    [root] = spans.named("web publish OrderPlaced")
    [handling] = spans.named("picky handle OrderPlaced")
    dlq = dlq_topic("picky", ORDERS)
    [parking] = spans.named(f"picky dead-letter {dlq}")
    assert trace_id(handling) == trace_id(parking) == trace_id(root)
    assert parent_id(handling) == span_id(root) and parent_id(parking) == span_id(handling)
    assert [dict(e.attributes or {}).get("choreo.attempt") for e in handling.events] == [1, 2, None]
    assert [dict(e.attributes or {})["exception.message"] for e in handling.events] == [
        f"cannot reserve o-9 (try {n})" for n in (1, 2, 3)
    ]
    assert attributes(handling)["choreo.attempts"] == 3
    assert attributes(handling)["error.type"] == "builtins.ValueError"
    assert handling.status.status_code is StatusCode.ERROR
    assert parking.kind is SpanKind.PRODUCER and parking.status.status_code is StatusCode.ERROR
    assert attributes(parking)["messaging.destination.name"] == dlq
    assert attributes(parking)["choreo.dlq.reason"] == "handler-error"
    [parked] = transport.records(dlq)
    assert traceparent(parked) == (trace_id(root), span_id(parking))


def test_an_undecodable_record_gets_a_receive_span_under_its_producer_and_a_dead_letter_span() -> (
    None
):
    spans = Spans()
    catalog = isolated_catalog(PREFIX)
    transport = MemoryTransport()
    svc = choreo.Service("strict")
    svc.on(OrderPlaced)(reserve_stock)

    async def scenario() -> None:
        tracing = Tracing(svc.name, spans.provider(svc.name), group(svc.name))
        async with running([svc], catalog, transport, [tracing], group):
            producer = transport.producer("foreign")
            await (await producer.send(ORDERS, b"k", b"not avro", [("traceparent", UPSTREAM)]))
            await settle(transport, group(svc.name))

    asyncio.run(scenario())
    [receiving] = spans.named(f"strict receive {ORDERS}")
    [parking] = spans.named(f"strict dead-letter {dlq_topic('strict', ORDERS)}")
    assert trace_id(receiving) == UPSTREAM.decode().split("-")[1]
    assert parent_id(receiving) == UPSTREAM.decode().split("-")[2]
    assert parent_id(parking) == span_id(receiving)
    assert attributes(receiving)["messaging.operation.name"] == "receive"
    assert attributes(receiving)["choreo.dlq.reason"] == attributes(parking)["choreo.dlq.reason"]


def test_a_batch_span_continues_the_first_records_trace_and_links_every_record() -> None:
    spans = Spans()
    catalog = isolated_catalog(PREFIX)
    transport = MemoryTransport()
    svc = choreo.Service("bulk")
    sizes: list[int] = []

    @svc.on_batch(OrderPlaced, max_size=3, max_wait_s=5.0)
    def reserve_all(events: list[OrderPlaced], ctx: choreo.Context) -> None:
        sizes.append(len(events))

    async def scenario() -> None:
        web = publisher(catalog, transport, "web", spans.provider("web"))
        for _ in range(3):  # one key: one partition, one batch
            await web.publish(placed("o-1"))
        tracing = Tracing(svc.name, spans.provider(svc.name), group(svc.name))
        async with running([svc], catalog, transport, [tracing], group):
            await settle(transport, group(svc.name))

    asyncio.run(scenario())
    assert sizes == [3]
    roots = spans.named("web publish OrderPlaced")
    [batch] = spans.named("bulk handle OrderPlaced")
    assert [link.context.span_id for link in batch.links] == [r.context.span_id for r in roots]
    assert trace_id(batch) == trace_id(roots[0]) and parent_id(batch) == span_id(roots[0])
    assert attributes(batch)["messaging.batch.message_count"] == 3


def test_publishing_inside_a_callers_span_makes_the_producer_span_its_child() -> None:
    spans = Spans()
    provider = spans.provider("web")
    tracing = Tracing("web", provider)
    headers = _headers.event_headers(b"shop.orders.OrderReceived", b"web", "id-1", "id-1", None)
    with provider.get_tracer("test").start_as_current_span("POST /orders") as request:
        tracing.inject(headers)
    [publish] = spans.named("web publish OrderReceived")
    assert (
        publish.parent is not None and publish.parent.span_id == request.get_span_context().span_id
    )
    assert traceparent(Record("t", 0, 0, None, None, headers, 0)) == (
        trace_id(publish),
        span_id(publish),
    )


def test_tracing_and_metrics_share_one_seam_and_nothing_configured_means_none() -> None:
    assert build_instrumentation("svc") is None
    provider = Spans().provider("svc")
    assert isinstance(build_instrumentation("svc", tracer_provider=provider), Tracing)


@pytest.mark.parametrize(
    ("env", "on"),
    [
        ({}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}, True),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:4318/v1/traces"}, True),
        ({"OTEL_TRACES_EXPORTER": "otlp"}, True),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://x:4318", "OTEL_TRACES_EXPORTER": "none"}, False),
    ],
)
def test_tracing_is_on_only_when_the_otel_variables_ask_for_it(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], on: bool
) -> None:
    for name in OTEL_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    provider = tracer_provider_from_env("orders")
    assert (provider is not None) is on
    if provider is not None:
        assert provider.resource.attributes["service.name"] == "orders"
        provider.shutdown()


@pytest.mark.parametrize(
    ("protocol", "exporter"),
    [(None, HttpExporter), ("http/protobuf", HttpExporter), ("grpc", GrpcExporter)],
)
def test_the_otlp_protocol_picks_the_exporter(
    monkeypatch: pytest.MonkeyPatch, protocol: str | None, exporter: type
) -> None:
    for name in OTEL_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    if protocol is not None:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", protocol)
    assert isinstance(span_exporter("otlp"), exporter)


def test_otel_service_name_renames_the_service_and_unknown_exporters_are_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in OTEL_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "console")
    monkeypatch.setenv("OTEL_SERVICE_NAME", "orders-eu")
    provider = tracer_provider_from_env("orders")
    assert provider is not None and provider.resource.attributes["service.name"] == "orders-eu"
    provider.shutdown()
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "zipkin")
    with pytest.raises(ConfigError, match="zipkin"):
        tracer_provider_from_env("orders")


def test_log_lines_carry_the_trace_of_the_record_being_handled(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from choreo._observability.logs import JsonFormatter, TraceContextFilter

    spans = Spans()
    tracer = spans.provider("svc").get_tracer("test")
    logger = logging.getLogger("obs-test")
    caplog.handler.addFilter(TraceContextFilter())
    with caplog.at_level(logging.INFO, "obs-test"):
        logger.info("outside")
        with tracer.start_as_current_span("work") as span:
            logger.warning("inside %s", 1)
    outside, inside = caplog.records
    context = span.get_span_context()
    assert getattr(outside, "trace_id") == ""  # noqa: B009
    assert getattr(inside, "trace_id") == format(context.trace_id, "032x")  # noqa: B009
    line = JsonFormatter().format(inside)
    assert '"message": "inside 1"' in line and f'"span_id": "{context.span_id:016x}"' in line
