"""On the real stack: a ``Publisher`` configured like a service, traced like one.

A web handler that publishes the first event of a transaction must not need
private types to be traced, must continue the request's span, and must reach
the broker and the topics its ``CHOREO_*`` environment names.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest
from builders import received
from confluent_kafka.admin import AdminClient
from obs_kit import (
    Spans,
    confluent,
    jaeger_trace,
    parent_id,
    read_topic,
    span_id,
    trace_id,
    traceparent,
)

import choreo
from choreo._config import KafkaConfig
from choreo._schemas import Catalog
from choreo.pytest_plugin import JaegerEndpoints

pytestmark = pytest.mark.stack

Names = Callable[[str], str]
ROOT = Path(__file__).resolve().parents[2]


def _orders_topic(schemas: Path) -> str:
    return Catalog.load(schemas).topic_of("shop.orders.OrderReceived").name


def test_a_publisher_reads_the_choreo_environment_creates_its_topic_and_exports_to_jaeger(
    kafka: str,
    jaeger: JaegerEndpoints,
    isolated_schemas: Path,
    unique_name: Names,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    web = unique_name("web")
    monkeypatch.setenv("CHOREO_BOOTSTRAP_SERVERS", kafka)
    monkeypatch.setenv("CHOREO_SCHEMAS_DIR", str(isolated_schemas))
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", jaeger.otlp_http)
    monkeypatch.setenv("OTEL_SERVICE_NAME", web)
    topic = _orders_topic(isolated_schemas)
    order_id = unique_name("order")

    async def scenario() -> str:
        async with choreo.Publisher("web") as publisher:  # no config: the environment's
            return await publisher.publish(received(order_id))

    event_id = asyncio.run(scenario())
    partitions = len(
        AdminClient({"bootstrap.servers": kafka}).list_topics(topic).topics[topic].partitions
    )
    # Created from catalog.toml before the send, not auto-created by the broker with 1.
    assert partitions == Catalog.load(isolated_schemas).topics[topic].partitions > 1
    found = asyncio.run(jaeger_trace(jaeger.query, web, spans=1))
    span = found.one("web publish OrderReceived")
    assert span["service"] == web
    assert span["tags_"]["messaging.message.id"] == event_id


def test_publishing_inside_a_web_request_continues_its_trace_on_the_wire(
    kafka: str, isolated_schemas: Path, unique_name: Names
) -> None:
    spans = Spans()
    provider = spans.provider("web")
    config = choreo.ServiceConfig(
        kafka=KafkaConfig(bootstrap_servers=kafka), schemas_dir=str(isolated_schemas)
    )
    topic = _orders_topic(isolated_schemas)

    async def scenario() -> tuple[str, str]:
        async with choreo.Publisher("web", config, tracer_provider=provider) as publisher:
            with provider.get_tracer("web").start_as_current_span("POST /orders") as request:
                await publisher.publish(received(unique_name("order")))
        [record] = await read_topic(confluent(kafka), topic, 1, unique_name("reader"))
        context = request.get_span_context()
        assert traceparent(record)[0] == f"{context.trace_id:032x}"
        return f"{context.span_id:016x}", traceparent(record)[1]

    request_span, record_parent = asyncio.run(scenario())
    [publish] = spans.named("web publish OrderReceived")
    assert parent_id(publish) == request_span
    assert record_parent == span_id(publish)
    assert trace_id(publish) == trace_id(spans.named("POST /orders")[0])


_APP = textwrap.dedent(
    """
    import asyncio, json, sys
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    sys.path.insert(0, "tests")
    from builders import received
    import choreo

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)  # the web framework's own set-up

    async def main():
        async with choreo.Publisher("web") as publisher:
            with trace.get_tracer("app").start_as_current_span("POST /orders"):
                await publisher.publish(received(sys.argv[1]))
        spans = {s.name: s for s in exporter.get_finished_spans()}
        publish, request = spans["web publish OrderReceived"], spans["POST /orders"]
        print(json.dumps({
            "same_trace": publish.context.trace_id == request.context.trace_id,
            "parent_is_request": publish.parent.span_id == request.context.span_id,
        }))

    asyncio.run(main())
    """
)


def test_a_publisher_uses_the_tracer_provider_the_application_installed(
    kafka: str, isolated_schemas: Path, unique_name: Names
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    env |= {"CHOREO_BOOTSTRAP_SERVERS": kafka, "CHOREO_SCHEMAS_DIR": str(isolated_schemas)}
    done = subprocess.run(
        [sys.executable, "-c", _APP, unique_name("order")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.splitlines()[-1]) == {
        "same_trace": True,
        "parent_is_request": True,
    }
