"""On the real stack: services on Kafka export to Jaeger, and the trace Jaeger assembles is right.

Each test has its own topics, groups and service names, so Jaeger's answer
for a service is exactly the traces this test made.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import pytest
from builders import placed, received
from obs_kit import (
    FAST,
    JaegerTrace,
    NoListener,
    Spans,
    confluent,
    eventually,
    http_get,
    isolated_catalog,
    jaeger_trace,
    publisher,
    read_topic,
    reserve_stock,
    running,
    samples,
    traceparent,
    value,
)

import choreo
from choreo._config import KafkaConfig
from choreo._observability import Metrics, Observability, Tracing
from choreo._runtime.dead_letters import dlq_topic
from choreo._transport.aiokafka import AiokafkaTransport
from choreo._transport.base import TopicConfig, TopicPartition, Transport
from choreo.pytest_plugin import JaegerEndpoints
from services import orders
from services.events import OrderPlaced, OrderReceived

pytestmark = pytest.mark.stack

Names = Callable[[str], str]


def tags(span: dict[str, object]) -> dict[str, object]:
    found = span["tags_"]
    assert isinstance(found, dict)
    return found


def test_a_saga_across_two_services_is_one_trace_in_jaeger(
    kafka: str, jaeger: JaegerEndpoints, unique_name: Names
) -> None:
    prefix = unique_name("obs")
    catalog = isolated_catalog(prefix)
    transport = confluent(kafka)
    web, placer_name, reserver_name = (unique_name(n) for n in ("web", "orders", "inventory"))
    placer, reserver = choreo.Service(placer_name), choreo.Service(reserver_name)
    placer.on(OrderReceived)(orders.validate_order)
    reserver.on(OrderPlaced)(reserve_stock)
    spans = Spans(jaeger.otlp_http)
    groups = {s.name: unique_name("g") for s in (placer, reserver)}
    instruments = [
        Tracing(s.name, spans.provider(s.name), groups[s.name]) for s in (placer, reserver)
    ]
    order_id = unique_name("order")

    async def scenario() -> tuple[str, JaegerTrace, float]:
        async with running([placer, reserver], catalog, transport, instruments, groups.get):
            began = time.monotonic()
            emitter = publisher(catalog, transport, web, spans.provider(web))
            event_id = await emitter.publish(received(order_id))
            await eventually(
                lambda: bool(spans.named(f"{reserver_name} handle OrderPlaced")),
                30.0,
                "inventory handled the placed order",
            )
            took = time.monotonic() - began
        spans.flush()
        return event_id, await jaeger_trace(jaeger.query, web, spans=3), took

    event_id, found, took = asyncio.run(scenario())
    spans.shutdown()
    root = found.one(f"{web} publish OrderReceived")
    placing = found.one(f"{placer_name} handle OrderReceived")
    reserving = found.one(f"{reserver_name} handle OrderPlaced")
    assert len(found.spans) == 3, [s["operationName"] for s in found.spans]
    assert (root["service"], placing["service"], reserving["service"]) == (
        web,
        placer_name,
        reserver_name,
    )
    assert root["parent"] is None
    assert placing["parent"] == root["spanID"]
    assert reserving["parent"] == placing["spanID"]  # current while orders emitted
    assert tags(root)["span.kind"] == "producer"
    assert tags(placing)["span.kind"] == tags(reserving)["span.kind"] == "consumer"
    placing_tags = tags(placing)
    assert placing_tags["messaging.system"] == "kafka"
    assert placing_tags["messaging.destination.name"] == f"{prefix}.shop.orders"
    assert placing_tags["messaging.operation.type"] == "process"
    assert placing_tags["messaging.consumer.group.name"] == groups[placer_name]
    assert placing_tags["messaging.kafka.message.key"] == order_id
    assert placing_tags["messaging.message.id"] == event_id
    assert int(str(placing_tags["messaging.destination.partition.id"])) in range(3)
    assert isinstance(placing_tags["messaging.kafka.offset"], int)
    print(f"\none trace, 3 spans, publish to inventory handled in {took:.2f}s")


def test_a_dead_lettered_record_keeps_its_retries_and_the_dlq_hop_in_the_producers_trace(
    kafka: str, jaeger: JaegerEndpoints, unique_name: Names
) -> None:
    prefix = unique_name("obs")
    catalog = isolated_catalog(prefix)
    transport = confluent(kafka)
    web, name = unique_name("web"), unique_name("picky")
    svc = choreo.Service(name)

    @svc.on(OrderPlaced, retry=FAST)
    def reserve(event: OrderPlaced, ctx: choreo.Context) -> None:
        raise ValueError(f"warehouse refused {event.order_id}")

    spans = Spans(jaeger.otlp_http)
    group = unique_name("g")
    order_id = unique_name("order")
    dlq = dlq_topic(name, f"{prefix}.shop.orders")

    async def scenario() -> tuple[JaegerTrace, tuple[str, str]]:
        tracing = Tracing(name, spans.provider(name), group)
        async with running([svc], catalog, transport, [tracing], lambda _: group):
            await publisher(catalog, transport, web, spans.provider(web)).publish(placed(order_id))
            [parked] = await read_topic(transport, dlq, 1, unique_name("reader"))
        spans.flush()
        return await jaeger_trace(jaeger.query, web, spans=3), traceparent(parked)

    found, parked = asyncio.run(scenario())
    spans.shutdown()
    root = found.one(f"{web} publish OrderPlaced")
    handling = found.one(f"{name} handle OrderPlaced")
    parking = found.one(f"{name} dead-letter {dlq}")
    assert len(found.spans) == 3
    assert handling["parent"] == root["spanID"] and parking["parent"] == handling["spanID"]
    events = [{f["key"]: f["value"] for f in log["fields"]} for log in handling["logs"]]
    assert [e.get("choreo.attempt") for e in events] == [1, 2, None]
    assert [e["exception.type"] for e in events] == ["ValueError"] * 3
    assert tags(handling)["otel.status_code"] == "ERROR"
    assert tags(handling)["choreo.attempts"] == 3
    assert tags(parking)["otel.status_code"] == "ERROR"
    assert tags(parking)["choreo.dlq.reason"] == "handler-error"
    assert parked == (found.trace_id.rjust(32, "0"), parking["spanID"].rjust(16, "0"))


def test_the_metrics_endpoint_counts_exactly_what_happened_and_the_probes_answer(
    kafka: str, jaeger: JaegerEndpoints, unique_name: Names
) -> None:
    prefix = unique_name("obs")
    catalog = isolated_catalog(prefix)
    transport = confluent(kafka)
    name = unique_name("counted")
    svc = choreo.Service(name)
    bad = unique_name("bad")

    @svc.on(OrderPlaced, retry=FAST)
    def reserve(event: OrderPlaced, ctx: choreo.Context) -> None:
        if event.order_id == bad:
            raise LookupError(f"no stock record for {event.order_id}")

    spans = Spans(jaeger.otlp_http)
    group = unique_name("g")
    observability = Observability(
        name,
        group,
        tracer_provider=spans.provider(name),
        metrics=Metrics(name),
        probes=("127.0.0.1", 0),
    )
    orders_topic = f"{prefix}.shop.orders"
    good = [unique_name("order") for _ in range(5)]

    async def scenario() -> dict[str, tuple[int, str]]:
        instruments = [observability.instrument]
        async with running([svc], catalog, transport, instruments, lambda _: group) as [runner]:
            observability.start(runner)
            emitter = publisher(catalog, transport, unique_name("web"))
            for order_id in [*good[:3], bad, *good[3:]]:
                await emitter.publish(placed(order_id))

            async def caught_up() -> bool:
                ends, committed = await runner.high_watermarks(), runner.committed()
                done = [committed.get(tp) == end for tp, end in ends.items() if end]
                return sum(ends.values()) == 6 and all(done)

            await eventually(caught_up, 30.0, "all 6 records handled and committed")
            seen = {
                path: await asyncio.to_thread(http_get, f"{observability.url}{path}")
                for path in ("/metrics", "/healthz", "/readyz")
            }
        observability.close()
        return seen

    seen = asyncio.run(scenario())
    assert seen["/healthz"] == (200, "ok\n")
    assert seen["/readyz"] == (200, "ready\n")
    found = samples(seen["/metrics"][1])
    labels = {"service": name, "topic": orders_topic}
    by_type = {**labels, "event_type": "shop.orders.OrderPlaced"}
    assert value(found, "choreo_messages_consumed_total", **labels) == 6
    assert value(found, "choreo_messages_handled_total", **by_type) == 5
    assert value(found, "choreo_messages_retried_total", **by_type) == 2
    assert (
        value(
            found,
            "choreo_messages_dead_lettered_total",
            reason="handler-error",
            error_type="builtins.LookupError",
            **labels,
        )
        == 1
    )
    assert value(found, "choreo_handler_duration_seconds_count", outcome="handled", **by_type) == 5
    assert value(found, "choreo_records_in_flight", service=name) == 0
    lags = {dict(ls)["partition"]: v for (n, ls), v in found.items() if n == "choreo_consumer_lag"}
    assert lags and set(lags.values()) == {0.0}, lags
    assert len(spans.named(f"{name} handle OrderPlaced")) == 6  # tracing rode the same seam


@pytest.mark.parametrize("client", ["confluent", "aiokafka"])
def test_high_watermarks_are_the_log_end_offsets(
    kafka: str, unique_name: Names, client: str
) -> None:
    topic = unique_name("wm")
    config = KafkaConfig(bootstrap_servers=kafka)
    transport: Transport = confluent(kafka) if client == "confluent" else AiokafkaTransport(config)

    async def scenario() -> dict[TopicPartition, int]:
        await transport.ensure_topics([TopicConfig(topic, partitions=2)])
        producer = transport.producer("wm")
        for key in (b"a", b"a", b"a"):
            await (await producer.send(topic, key, b"v", []))
        await producer.close()  # acknowledged by all replicas: at the log end
        consumer = transport.consumer(unique_name("g"), "wm-reader")
        await consumer.subscribe([topic], NoListener())
        try:
            return await consumer.high_watermarks(
                [TopicPartition(topic, 0), TopicPartition(topic, 1)]
            )
        finally:
            await consumer.close()

    ends = asyncio.run(scenario())
    assert sorted(ends.values()) == [0, 3]
