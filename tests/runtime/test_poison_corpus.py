"""Eight kinds of poison among 10,000 good events on the real broker: nothing stops or is lost."""

from __future__ import annotations

import asyncio
import io
import json
import time
import uuid
from collections import Counter
from decimal import Decimal
from pathlib import Path

import fastavro
import pytest
from builders import placed
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

import choreo
from choreo import _headers
from choreo._config import KafkaConfig, ServiceConfig
from choreo._runtime import dead_letters as dlq
from choreo._runtime.runner import ServiceRunner
from choreo._schemas import Catalog, Codec
from choreo._transport.registry import make_transport
from services.events import OrderPlaced, StockReserved

pytestmark = pytest.mark.stack
GOOD = 10_000
EACH = 5
MAX_BYTES = 20_000


def _headers_for(event_type: str) -> list[tuple[str, bytes]]:
    return _headers.event_headers(event_type.encode(), b"test", str(uuid.uuid4()), "c", None)


def _poison(catalog: Catalog, codec: Codec) -> dict[str, list[tuple[bytes | None, str]]]:
    """Each DLQ reason → records (value, ce_type header) that must end up with it."""
    good = codec.encode(placed("poison"))
    # Logical types are not part of the fingerprint: a writer that ignores the declared
    # decimal(10, 2) produces bytes that decode, then fail the model's validation.
    loose = json.loads(catalog.latest(OrderPlaced.event_type).path.read_text())
    [total] = [f for f in loose["fields"] if f["name"] == "total"]
    total["type"]["precision"] = 20
    body = io.BytesIO()
    record = placed("poison").model_dump()
    record["total"] = Decimal("123456789012.99")
    fastavro.schemaless_writer(body, fastavro.parse_schema(loose), record)
    invalid = good[:10] + body.getvalue()
    reserved = StockReserved(
        order_id="poison",
        reservation_id=uuid.uuid4(),
        items=[],
        reserved_at=placed().placed_at,
        expires_at=placed().placed_at,
    )
    placed_type = OrderPlaced.event_type
    return {
        "not-avro": [(b"{'json': 'not avro'}", placed_type), (good + b"trailing", placed_type)],
        "unknown-fingerprint": [(b"\xc3\x01" + bytes(8) + good[10:], placed_type)],
        "truncated": [(good[:-30], placed_type)],
        "invalid": [(invalid, placed_type)],
        "tombstone": [(None, placed_type)],
        "too-large": [(good + bytes(MAX_BYTES), placed_type)],
        "wrong-type": [(codec.encode(reserved), placed_type)],
    }


def test_poison_goes_to_the_dlq_with_its_reason_and_every_good_event_is_handled_once(
    kafka: str, isolated_schemas: Path
) -> None:
    catalog = Catalog.load(isolated_schemas)
    codec = Codec(catalog)
    topic = catalog.topic_of(OrderPlaced.event_type).name
    poison = _poison(catalog, codec)
    kinds = sum(len(values) for values in poison.values())
    assert kinds == 8

    admin = AdminClient({"bootstrap.servers": kafka})
    for future in admin.create_topics([NewTopic(topic, 3, 1)]).values():
        future.result(30)
    producer = Producer(
        {"bootstrap.servers": kafka, "linger.ms": 20, "message.max.bytes": 2_000_000}
    )
    bad = [(value, ce_type) for values in poison.values() for value, ce_type in values]
    for i in range(GOOD):
        producer.produce(
            topic,
            key=f"o-{i % 100}".encode(),
            value=codec.encode(placed(f"o-{i % 100}")),
            headers=_headers_for(OrderPlaced.event_type),
        )
        if i % (GOOD // EACH) == 0:
            for value, ce_type in bad:
                producer.produce(topic, key=b"poison", value=value, headers=_headers_for(ce_type))
        producer.poll(0)
    assert producer.flush(60) == 0

    handled: Counter[str] = Counter()
    svc = choreo.Service(f"sturdy-{time.time_ns()}")

    @svc.on(OrderPlaced)
    def count(event: OrderPlaced, ctx: choreo.Context) -> None:
        assert ctx.record is not None
        handled[f"{ctx.record.partition}/{ctx.record.offset}"] += 1

    config = ServiceConfig(
        kafka=KafkaConfig(bootstrap_servers=kafka),
        schemas_dir=isolated_schemas,
        max_record_bytes=MAX_BYTES,
    )

    async def run() -> None:
        runner = ServiceRunner(svc, config, make_transport("confluent", config.kafka), catalog)
        await runner.start()
        stop = asyncio.Event()
        task = asyncio.create_task(runner.run(stop))
        deadline = time.monotonic() + 90
        while len(handled) < GOOD and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        await asyncio.sleep(2)  # dead letters delivered, offsets committed
        stop.set()
        await task

    asyncio.run(run())

    assert len(handled) == GOOD and set(handled.values()) == {1}
    parked = _read(kafka, dlq.dlq_topic(svc.name, topic), expected=EACH * kinds)
    reasons = Counter(dict(h)[dlq.REASON].decode() for h in parked)
    assert reasons == {reason: EACH * len(values) for reason, values in poison.items()}
    assert _lag(kafka, svc.name, topic, partitions=3) == 0


def _read(kafka: str, topic: str, expected: int) -> list[list[tuple[str, bytes]]]:
    consumer = Consumer(
        {
            "bootstrap.servers": kafka,
            "group.id": f"r-{uuid.uuid4()}",
            "auto.offset.reset": "earliest",
        }
    )
    consumer.subscribe([topic])
    found: list[list[tuple[str, bytes]]] = []
    deadline = time.monotonic() + 30
    while len(found) < expected and time.monotonic() < deadline:
        found += [m.headers() or [] for m in consumer.consume(500, 0.5) if m.error() is None]
    consumer.close()
    return found


def _lag(kafka: str, group: str, topic: str, partitions: int) -> int:
    consumer = Consumer({"bootstrap.servers": kafka, "group.id": group})
    tps = [TopicPartition(topic, p) for p in range(partitions)]
    committed = {tp.partition: tp.offset for tp in consumer.committed(tps, timeout=10)}
    lag = sum(
        consumer.get_watermark_offsets(tp, timeout=10)[1] - max(committed[tp.partition], 0)
        for tp in tps
    )
    consumer.close()
    return lag
