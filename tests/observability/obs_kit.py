"""Helpers of the observability tests: isolated topics, running services, spans, Jaeger.

Each test gets topics of its own (the shop catalog's topics under a unique
prefix): a fresh consumer group on the shared ``shop.*`` topics would read,
and its services re-emit, everything earlier runs left there.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from builders import reserved
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client.parser import text_string_to_metric_families

import choreo
from choreo._config import KafkaConfig, ServiceConfig
from choreo._emitter import Emitter
from choreo._observability import Tracing
from choreo._runtime.instrument import Instrumentation
from choreo._runtime.runner import ServiceRunner
from choreo._schemas import Catalog, Codec, TopicSpec
from choreo._service import Service
from choreo._transport.base import Record, TopicPartition, Transport
from choreo._transport.confluent import ConfluentTransport
from services.events import OrderPlaced

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"
FAST = choreo.RetryPolicy(max_attempts=3, initial_interval_s=0.01, jitter=0.0)
"""Two quick retries, then the dead-letter topic."""


def isolated_catalog(
    prefix: str, names: Sequence[str] = ("shop.orders", "shop.inventory")
) -> Catalog:
    """The shop catalog's ``names`` topics (and only those) as ``<prefix>.<name>``."""
    shop = Catalog.load(SCHEMAS)
    topics = {
        f"{prefix}.{name}": TopicSpec(f"{prefix}.{name}", spec.events, spec.key, spec.partitions)
        for name, spec in shop.topics.items()
        if name in names
    }
    versions = {event_type: shop.versions(event_type) for event_type in shop.event_types}
    return Catalog(versions, topics, None)


class Spans:
    """A tracer provider per service, all recording here; optionally exporting to Jaeger too."""

    def __init__(self, otlp_http: str | None = None) -> None:
        self.memory = InMemorySpanExporter()
        self._otlp_http = otlp_http
        self._providers: list[TracerProvider] = []

    def provider(self, service: str) -> TracerProvider:
        provider = TracerProvider(resource=Resource.create({SERVICE_NAME: service}))
        provider.add_span_processor(SimpleSpanProcessor(self.memory))
        if self._otlp_http is not None:
            exporter = OTLPSpanExporter(endpoint=f"{self._otlp_http}/v1/traces")
            provider.add_span_processor(BatchSpanProcessor(exporter))
        self._providers.append(provider)
        return provider

    def finished(self) -> list[ReadableSpan]:
        return list(self.memory.get_finished_spans())

    def named(self, name: str) -> list[ReadableSpan]:
        return [span for span in self.finished() if span.name == name]

    def flush(self) -> None:
        """Export whatever is batched (what ``choreo run`` does at exit)."""
        for provider in self._providers:
            assert provider.force_flush(10_000), "spans not exported within 10s"

    def shutdown(self) -> None:
        for provider in self._providers:
            provider.shutdown()


def publisher(
    catalog: Catalog, transport: Transport, source: str, provider: TracerProvider | None = None
) -> Emitter:
    """What ``choreo.Publisher`` does (traced with a ``provider``): events from outside handlers."""
    tracing = None if provider is None else Tracing(source, provider)
    return Emitter(catalog, Codec(catalog), transport.producer(f"pub-{source}"), source, tracing)


@asynccontextmanager
async def running(
    services: Sequence[Service],
    catalog: Catalog,
    transport: Transport,
    instruments: Sequence[Instrumentation | None],
    group: Callable[[str], str],
) -> AsyncIterator[list[ServiceRunner]]:
    """The services consuming until the block ends; ``group(name)`` names each one's group."""
    runners = [
        ServiceRunner(
            service,
            ServiceConfig(
                group_id=group(service.name),
                commit_interval_s=0.05,
                shutdown_grace_s=5.0,
            ),
            transport,
            catalog,
            instrument=instrument,
        )
        for service, instrument in zip(services, instruments, strict=True)
    ]
    for runner in runners:
        await runner.start()
    stop = asyncio.Event()
    tasks = [asyncio.create_task(runner.run(stop)) for runner in runners]
    try:
        yield runners
    finally:
        stop.set()
        await asyncio.gather(*tasks)


def confluent(kafka: str) -> ConfluentTransport:
    return ConfluentTransport(KafkaConfig(bootstrap_servers=kafka))


async def eventually(
    check: Callable[[], bool | Awaitable[bool]], timeout_s: float, what: str
) -> float:
    """Wait until ``check()`` (maybe async) holds; returns the seconds it took."""
    began = time.monotonic()
    while not await _holds(check):
        if time.monotonic() - began > timeout_s:
            raise AssertionError(f"{what}: not true after {timeout_s:.0f}s")
        await asyncio.sleep(0.02)
    return time.monotonic() - began


async def _holds(check: Callable[[], bool | Awaitable[bool]]) -> bool:
    result = check()
    return await result if inspect.isawaitable(result) else result


def trace_id(span: ReadableSpan) -> str:
    assert span.context is not None
    return format(span.context.trace_id, "032x")


def span_id(span: ReadableSpan) -> str:
    assert span.context is not None
    return format(span.context.span_id, "016x")


def parent_id(span: ReadableSpan) -> str | None:
    return None if span.parent is None else format(span.parent.span_id, "016x")


def traceparent(record: Record) -> tuple[str, str]:
    """(trace id, span id) of the last ``traceparent`` header."""
    value = record.header("traceparent")
    assert value is not None, f"{record} has no traceparent"
    _, trace, span, _ = value.decode().split("-")
    return trace, span


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.loads(response.read())


def http_get(url: str) -> tuple[int, str]:
    """Status and body, 4xx/5xx included."""
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


class JaegerTrace:
    """One trace as Jaeger's query API returns it, indexed for assertions."""

    def __init__(self, data: dict[str, Any]) -> None:
        self.trace_id: str = data["traceID"]
        services = {pid: p["serviceName"] for pid, p in data["processes"].items()}
        self.spans: list[dict[str, Any]] = data["spans"]
        for span in self.spans:
            span["service"] = services[span["processID"]]
            span["tags_"] = {tag["key"]: tag["value"] for tag in span["tags"]}
            parents = [r["spanID"] for r in span["references"] if r["refType"] == "CHILD_OF"]
            span["parent"] = parents[0] if parents else None

    def one(self, operation: str) -> dict[str, Any]:
        [span] = [s for s in self.spans if s["operationName"] == operation]
        return span


async def jaeger_trace(
    query: str, service: str, spans: int, timeout_s: float = 20.0
) -> JaegerTrace:
    """The one trace of ``service`` once Jaeger has ``spans`` spans in it (ingestion is async)."""
    found: list[JaegerTrace] = []

    def ready() -> bool:
        try:
            listed = get_json(f"{query}/api/traces?service={service}&lookback=1h&limit=20")["data"]
        except urllib.error.URLError:  # the service is not known yet
            return False
        if not listed:
            return False
        assert len(listed) == 1, f"{service} has {len(listed)} traces, one expected"
        whole = get_json(f"{query}/api/traces/{listed[0]['traceID']}")["data"][0]
        found[:] = [JaegerTrace(whole)]
        return len(whole["spans"]) >= spans

    await eventually(ready, timeout_s, f"jaeger has a {spans}-span trace of {service}")
    return found[0]


class NoListener:
    async def on_assigned(self, partitions: list[TopicPartition]) -> None:
        return None

    async def on_revoked(self, partitions: list[TopicPartition]) -> None:
        return None


async def read_topic(transport: Transport, topic: str, count: int, group: str) -> list[Record]:
    """The first ``count`` records of ``topic``, read by a throwaway group."""
    consumer = transport.consumer(group, "obs-test-reader")
    await consumer.subscribe([topic], NoListener())
    records: list[Record] = []
    deadline = time.monotonic() + 30.0
    try:
        while len(records) < count and time.monotonic() < deadline:
            records += await consumer.poll(100, 0.2)
    finally:
        await consumer.close()
    assert len(records) == count, f"{topic}: {len(records)} records, {count} expected"
    return records


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Prometheus text as {(sample name, labels): value}."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(
    found: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str
) -> float:
    """The one sample of ``name`` whose labels include ``labels`` (0 when there is none)."""
    matching = [v for (n, ls), v in found.items() if n == name and set(labels.items()) <= ls]
    assert len(matching) <= 1, f"{name}{labels}: {len(matching)} samples"
    return matching[0] if matching else 0.0


def reserve_stock(event: OrderPlaced, ctx: choreo.Context) -> None:
    """Inventory's answer without its database: what these tests trace is the emit."""
    ctx.emit(reserved(event.order_id))
