"""choreo and plain Confluent Avro clients share topics through the real registry and broker.

One ``choreo run`` service reads an orders topic that switches mid-stream from choreo's
single-object encoding to records a plain ``AvroSerializer`` writes (what a Java service
sends: registry framing, no CloudEvents headers); it handles every one with its typed model and
answers each with a payment, which choreo writes in the registry wire format and a plain
``AvroDeserializer`` reads back. A registry-framed record whose schema id the registry does not
know is the one dead letter, with its own reason and its bytes kept.
"""

from __future__ import annotations

import subprocess
import time
import uuid
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

import pytest
from builders import placed
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient
from confluent_kafka.schema_registry import SchemaRegistryClient, topic_record_subject_name_strategy
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext
from runtime.runtime_kit import read_topic

from choreo import _headers
from choreo._runtime import dead_letters as dlq
from choreo._runtime.dead_letters import dlq_topic
from choreo._schemas import Catalog, Codec, Event
from choreo._schemas.registry_wire import schema_text
from services.events import OrderPlaced, PaymentAuthorized

pytestmark = pytest.mark.stack
EACH = 15
"""Orders written in each wire format."""
SERVICE = "registry-ledger"
StartService = Callable[..., subprocess.Popen[str]]


def _lines(path: Path, expected: int, process: subprocess.Popen[str], log: Path) -> list[str]:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        lines = path.read_text().splitlines() if path.exists() else []
        if len(lines) >= expected:
            return lines
        assert process.poll() is None, f"the service exited:\n{log.read_text()[-3000:]}"
        time.sleep(0.3)
    raise AssertionError(f"{len(lines)} of {expected} handled:\n{log.read_text()[-3000:]}")


def _records_in(kafka: str, topic: str) -> int:
    """How many records ``topic`` holds (0 when it was never created)."""
    metadata = AdminClient({"bootstrap.servers": kafka}).list_topics(topic, timeout=10)
    partitions = metadata.topics[topic].partitions if topic in metadata.topics else {}
    if not partitions:
        return 0
    consumer = Consumer({"bootstrap.servers": kafka, "group.id": f"count-{uuid.uuid4()}"})
    total = 0
    for partition in partitions:
        low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)
        total += high - low
    consumer.close()
    return total


def _as_dict(event: Event, ctx: SerializationContext) -> dict[str, object]:
    return event.model_dump(by_alias=True)


def test_foreign_registry_records_and_a_mid_stream_switch_are_handled_and_answered(
    kafka: str,
    schema_registry: str,
    pushed_schemas: Path,
    tmp_path: Path,
    start_service: StartService,
) -> None:
    catalog = Catalog.load(pushed_schemas)
    orders = catalog.topic_of(OrderPlaced.event_type).name
    payments = catalog.topic_of(PaymentAuthorized.event_type).name
    ledger = tmp_path / "ledger.txt"
    process = start_service(
        "registry_service",
        pushed_schemas,
        LEDGER_FILE=str(ledger),
        CHOREO_GROUP_ID=f"registry-{uuid.uuid4().hex[:8]}",
        CHOREO_SCHEMA_REGISTRY__URL=schema_registry,
    )
    registry = SchemaRegistryClient({"url": schema_registry, "timeout": 10})
    serialize = AvroSerializer(
        registry,
        schema_text(catalog.latest(OrderPlaced.event_type)),
        _as_dict,
        {
            "auto.register.schemas": False,  # choreo schemas push registered it
            "subject.name.strategy": topic_record_subject_name_strategy,
        },
    )
    producer = Producer({"bootstrap.servers": kafka, "linger.ms": 5})
    single_object = Codec(catalog)
    expected = {}
    for i in range(2 * EACH):
        event = placed(f"o-{i}", customer_id=f"c-{i}", quantity=i + 1)
        expected[event.order_id] = event
        if i < EACH:  # choreo's own encoding first, then the Java team's
            value = single_object.encode(event)
            headers = _headers.event_headers(
                OrderPlaced.event_type.encode(), b"choreo", event.order_id, event.order_id, None
            )
        else:
            value = serialize(event, SerializationContext(orders, MessageField.VALUE))
            headers = []
            assert value[0] == 0
        producer.produce(orders, value, event.order_id.encode(), headers=headers)
        if i == EACH - 1:
            assert producer.flush(30) == 0
    unknown_id = b"\x00\x7f\xff\xff\xf0" + value[5:]
    producer.produce(orders, unknown_id, b"unknown-id")
    assert producer.flush(30) == 0

    log = tmp_path / "registry_service-0.log"
    handled = _lines(ledger, 2 * EACH, process, log)
    seen = {line.split()[0]: line.split()[1:] for line in handled}
    assert set(seen) == set(expected)
    for order_id, (customer, total) in seen.items():
        assert customer == expected[order_id].customer_id
        assert Decimal(total) == expected[order_id].total

    deserialize = AvroDeserializer(registry)
    answers = read_topic(kafka, payments, 2 * EACH)
    assert len(answers) >= 2 * EACH
    context = SerializationContext(payments, MessageField.VALUE)
    paid = {}
    for value, headers in answers:
        assert value[0] == 0, "choreo wrote the payments topic in the registry wire format"
        assert (_headers.TYPE, PaymentAuthorized.event_type.encode()) in headers
        payment = deserialize(value, context)
        paid[payment["order_id"]] = payment
    assert set(paid) == set(expected)
    for order_id, payment in paid.items():
        assert payment["amount"] == expected[order_id].total
        assert payment["payment_id"] == uuid.uuid5(uuid.NAMESPACE_URL, order_id)
    parked = read_topic(kafka, dlq_topic(SERVICE, orders), 1)
    assert [value for value, _ in parked] == [unknown_id]
    assert (dlq.REASON, b"unknown-schema-id") in parked[0][1]
    assert _records_in(kafka, dlq_topic(SERVICE, orders)) == 1
    assert process.poll() is None
