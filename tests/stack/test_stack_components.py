"""Each component of the local stack does the job later features rely on."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request
import uuid
from collections.abc import Callable

import psycopg
import pytest
from confluent_kafka import Consumer, KafkaException, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from choreo.pytest_plugin import JaegerEndpoints

pytestmark = pytest.mark.stack
COUNT = 10_000


def _create_topic(kafka: str, topic: str, partitions: int = 3) -> None:
    admin = AdminClient({"bootstrap.servers": kafka})
    for future in admin.create_topics([NewTopic(topic, partitions, 1)]).values():
        future.result(30)


def _consume_confluent(
    kafka: str, topic: str, group: str, expected: int, **extra: str
) -> list[tuple[bytes, bytes]]:
    consumer = Consumer(
        {"bootstrap.servers": kafka, "group.id": group, "auto.offset.reset": "earliest", **extra}
    )
    consumer.subscribe([topic])
    seen: list[tuple[bytes, bytes]] = []
    deadline = time.monotonic() + 60
    while len(seen) < expected and time.monotonic() < deadline:
        for message in consumer.consume(1000, 0.5):
            assert message.error() is None, message.error()
            seen.append((message.key(), message.value()))
    consumer.close()
    return seen


async def _consume_aiokafka(
    kafka: str, topic: str, group: str, expected: int
) -> list[tuple[bytes, bytes]]:
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=kafka, group_id=group, auto_offset_reset="earliest"
    )
    await consumer.start()
    seen: list[tuple[bytes, bytes]] = []
    try:
        deadline = time.monotonic() + 60
        while len(seen) < expected and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=500, max_records=1000)
            seen += [(r.key, r.value) for records in batches.values() for r in records]
    finally:
        await consumer.stop()
    return seen


def test_confluent_produces_and_both_clients_consume_everything(
    kafka: str, unique_name: Callable[[str], str]
) -> None:
    topic = unique_name("roundtrip")
    _create_topic(kafka, topic)
    sent = [(f"key-{i % 97}".encode(), f"value-{i}".encode()) for i in range(COUNT)]
    producer = Producer({"bootstrap.servers": kafka, "enable.idempotence": True})
    for key, value in sent:
        producer.produce(topic, key=key, value=value)
    assert producer.flush(60) == 0

    by_confluent = _consume_confluent(kafka, topic, unique_name("g-confluent"), COUNT)
    by_aiokafka = asyncio.run(_consume_aiokafka(kafka, topic, unique_name("g-aiokafka"), COUNT))

    assert sorted(by_confluent) == sorted(sent)
    assert sorted(by_aiokafka) == sorted(sent)


def test_aborted_transaction_is_invisible_to_read_committed(
    kafka: str, unique_name: Callable[[str], str]
) -> None:
    topic = unique_name("txn")
    _create_topic(kafka, topic, partitions=1)
    producer = Producer({"bootstrap.servers": kafka, "transactional.id": unique_name("tx")})
    producer.init_transactions(30)
    producer.begin_transaction()
    producer.produce(topic, value=b"aborted")
    producer.flush(30)
    producer.abort_transaction(30)
    producer.begin_transaction()
    producer.produce(topic, value=b"committed")
    producer.commit_transaction(30)

    committed = _consume_confluent(
        kafka, topic, unique_name("g"), 1, **{"isolation.level": "read_committed"}
    )
    assert [value for _, value in committed] == [b"committed"]
    uncommitted = _consume_confluent(
        kafka, topic, unique_name("g"), 2, **{"isolation.level": "read_uncommitted"}
    )
    assert [value for _, value in uncommitted] == [b"aborted", b"committed"]


def test_idempotent_producer_refuses_nothing_and_fencing_works(
    kafka: str, unique_name: Callable[[str], str]
) -> None:
    """A second producer with the same transactional id fences the first (zombie fencing)."""
    topic = unique_name("fence")
    _create_topic(kafka, topic, partitions=1)
    txn_id = unique_name("tx")
    first = Producer({"bootstrap.servers": kafka, "transactional.id": txn_id})
    first.init_transactions(30)
    second = Producer({"bootstrap.servers": kafka, "transactional.id": txn_id})
    second.init_transactions(30)
    first.begin_transaction()
    first.produce(topic, value=b"zombie")
    with pytest.raises(KafkaException):
        first.commit_transaction(30)


def test_postgres_accepts_a_pgoutput_logical_replication_slot(postgres: str) -> None:
    slot = f"test_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(postgres, autocommit=True) as conn:
        wal_level = conn.execute("SHOW wal_level").fetchone()
        row = conn.execute(
            "SELECT slot_name FROM pg_create_logical_replication_slot(%s, 'pgoutput')", (slot,)
        ).fetchone()
        replication = conn.execute(
            "SELECT rolreplication FROM pg_roles WHERE rolname = current_user"
        ).fetchone()
        conn.execute("SELECT pg_drop_replication_slot(%s)", (slot,))
    assert wal_level == ("logical",)
    assert row == (slot,)
    assert replication == (True,)


def test_connect_lists_the_debezium_postgres_connector(connect: str) -> None:
    with urllib.request.urlopen(
        f"{connect}/connector-plugins?connectorsOnly=false", timeout=10
    ) as reply:
        classes = {plugin["class"] for plugin in json.load(reply)}
    assert "io.debezium.connector.postgresql.PostgresConnector" in classes
    assert "io.debezium.transforms.outbox.EventRouter" in classes


def test_connect_lists_the_apicurio_avro_converter(connect: str) -> None:
    """Installed as a second plugin; without its ServiceLoader manifest Connect would not see it."""
    from choreo._dev.connect import AVRO_CONVERTER, Connect

    port = int(connect.rsplit(":", 1)[1])
    stale = Connect(port=port).stale()
    if stale is not None:
        pytest.fail(f"connect: {stale}")
    with urllib.request.urlopen(
        f"{connect}/connector-plugins?connectorsOnly=false", timeout=10
    ) as reply:
        assert AVRO_CONVERTER in {plugin["class"] for plugin in json.load(reply)}


def test_the_registry_is_backward_by_default_and_ids_resolve_on_its_confluent_api(
    schema_registry: str, unique_name: Callable[[str], str]
) -> None:
    """Confluent's default compatibility, so a breaking version is refused naming the field."""
    from choreo._schemas.registry_client import RegistryClient, RegistryError

    client = RegistryClient(schema_registry, timeout_s=10)
    subject = unique_name("registry") + "-value"

    def record(*fields: dict[str, object]) -> str:
        return json.dumps({"type": "record", "name": "Probe", "fields": list(fields)})

    first = client.register(subject, record({"name": "a", "type": "int"}))
    breaking = record({"name": "a", "type": "int"}, {"name": "must", "type": "string"})
    with pytest.raises(RegistryError) as refused:
        client.register(subject, breaking)
    assert refused.value.status == 409 and "must" in str(refused.value)
    compatible = record({"name": "a", "type": "int"}, {"name": "b", "type": "int", "default": 0})
    second = client.register(subject, compatible)
    assert second != first
    assert json.loads(client.schema(second))["fields"][1]["name"] == "b"
    assert client.lookup(subject, record({"name": "a", "type": "int"})) == first


def test_jaeger_returns_a_span_exported_over_otlp(jaeger: JaegerEndpoints) -> None:
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    service = f"test-{uuid.uuid4().hex[:8]}"
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    provider.add_span_processor(
        SimpleSpanProcessor(OTLPSpanExporter(endpoint=f"{jaeger.otlp_http}/v1/traces"))
    )
    with provider.get_tracer("test").start_as_current_span("checkout") as span:
        trace_id = format(span.get_span_context().trace_id, "032x")
    provider.shutdown()

    deadline = time.monotonic() + 30
    found: list[dict[str, object]] = []
    while not found and time.monotonic() < deadline:
        with urllib.request.urlopen(
            f"{jaeger.query}/api/traces?service={service}", timeout=10
        ) as r:
            found = json.load(r).get("data") or []
        time.sleep(0.3)
    assert [t["traceID"] for t in found] == [trace_id]
    spans = found[0]["spans"]
    assert isinstance(spans, list) and [s["operationName"] for s in spans] == ["checkout"]
