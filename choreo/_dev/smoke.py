"""``choreo dev smoke``: prove each component of the stack does its job, with figures."""

from __future__ import annotations

import json
import time
import urllib.request
import uuid

from choreo._dev.settings import StackSettings

MESSAGES = 1000


def _kafka(settings: StackSettings) -> str:
    from confluent_kafka import Consumer, Producer

    topic = f"choreo-smoke-{uuid.uuid4().hex[:8]}"
    began = time.monotonic()
    producer = Producer({"bootstrap.servers": settings.bootstrap_servers, "acks": "all"})
    for i in range(MESSAGES):
        producer.produce(topic, key=str(i % 10), value=f"message {i}".encode())
    if producer.flush(30):
        raise RuntimeError("kafka: messages not delivered within 30s")
    consumer = Consumer(
        {
            "bootstrap.servers": settings.bootstrap_servers,
            "group.id": topic,
            "auto.offset.reset": "earliest",
        }
    )
    consumer.subscribe([topic])
    seen = 0
    deadline = time.monotonic() + 60
    while seen < MESSAGES and time.monotonic() < deadline:
        seen += sum(1 for m in consumer.consume(500, 1.0) if m.error() is None)
    consumer.close()
    if seen != MESSAGES:
        raise RuntimeError(f"kafka: consumed {seen} of {MESSAGES}")
    took = time.monotonic() - began
    return f"kafka: produced and consumed {seen} messages on {topic} in {took:.1f}s"


def _postgres(settings: StackSettings) -> str:
    import psycopg

    slot = f"choreo_smoke_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(settings.postgres_dsn, autocommit=True) as conn:
        level = conn.execute("SHOW wal_level").fetchone()
        conn.execute("SELECT pg_create_logical_replication_slot(%s, 'pgoutput')", (slot,))
        conn.execute("SELECT pg_drop_replication_slot(%s)", (slot,))
    return f"postgres: wal_level={level[0] if level else '?'}; pgoutput slot created and dropped"


def _connect(settings: StackSettings) -> str:
    with urllib.request.urlopen(f"{settings.connect_url}/connector-plugins", timeout=10) as reply:
        plugins = [p["class"] for p in json.load(reply)]
    postgres = [p for p in plugins if "postgresql" in p.lower()]
    if not postgres:
        raise RuntimeError("connect: the Debezium PostgreSQL connector is not installed")
    return f"connect: {len(plugins)} connector plugins, including {postgres[0]}"


def _jaeger(settings: StackSettings) -> str:
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    service = f"choreo-smoke-{uuid.uuid4().hex[:8]}"
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    exporter = OTLPSpanExporter(endpoint=f"{settings.otlp_endpoint}/v1/traces")
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    with provider.get_tracer("choreo.smoke").start_as_current_span("smoke"):
        pass
    provider.shutdown()
    url = f"{settings.jaeger_query_url}/api/traces?service={service}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with urllib.request.urlopen(url, timeout=10) as reply:
            traces = json.load(reply).get("data") or []
        if traces:
            return f"jaeger: span from {service} found in trace {traces[0]['traceID']}"
        time.sleep(0.5)
    raise RuntimeError(f"jaeger: no trace for {service} after 30s")


def round_trip(settings: StackSettings) -> int:
    failures = 0
    for check in (_kafka, _postgres, _connect, _jaeger):
        try:
            print(check(settings), flush=True)
        except Exception as error:
            failures += 1
            print(f"FAILED {error}", flush=True)
    return 1 if failures else 0
