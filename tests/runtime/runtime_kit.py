"""Helpers shared by the runtime tests that fill a topic and kill a service."""

from __future__ import annotations

import time
from pathlib import Path

from builders import placed
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic

import choreo
from choreo import _headers
from choreo._schemas import Catalog, Codec
from services.events import OrderPlaced


def fill_orders(kafka: str, catalog: Catalog, count: int, id_prefix: str) -> str:
    """``count`` OrderPlaced events (ids ``<id_prefix>-<i>``) on a fresh 3-partition topic."""
    codec = Codec(catalog)
    topic = catalog.topic_of(OrderPlaced.event_type).name
    admin = AdminClient({"bootstrap.servers": kafka})
    for future in admin.create_topics([NewTopic(topic, 3, 1)]).values():
        future.result(30)
    producer = Producer({"bootstrap.servers": kafka, "linger.ms": 20})
    template = placed("x")
    for i in range(count):
        event = template.model_copy(update={"order_id": f"o-{i}"})
        event_id = f"{id_prefix}-{i}"
        headers = _headers.event_headers(
            OrderPlaced.event_type.encode(), b"test", event_id, event_id, None
        )
        producer.produce(
            topic, key=event.order_id.encode(), value=codec.encode(event), headers=headers
        )
        producer.poll(0)
    assert producer.flush(60) == 0
    return topic


def fast_failover(tmp_path: Path) -> Path:
    """A config file: a killed member keeps its partitions until its session times out
    (45 s by default), so kill tests shorten the session."""
    config = tmp_path / "service.toml"
    config.write_text('[kafka.client_options]\n"session.timeout.ms" = "6000"\n')
    return config


async def publish(kafka: str, schemas: Path, events: list[choreo.Event]) -> list[str]:
    """Publish ``events`` as a producer outside any service would; returns their ids."""
    config = choreo.ServiceConfig(
        kafka=choreo.KafkaConfig(bootstrap_servers=kafka), schemas_dir=schemas
    )
    async with choreo.Publisher("test", config) as publisher:
        return [await publisher.publish(event) for event in events]


def read_topic(
    kafka: str, topic: str, expected: int, timeout_s: float = 60
) -> list[tuple[bytes, list[tuple[str, bytes]]]]:
    """Up to ``expected`` records (value, headers) of ``topic`` from the start."""
    consumer = Consumer(
        {
            "bootstrap.servers": kafka,
            "group.id": f"reader-{time.time_ns()}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([topic])
    found: list[tuple[bytes, list[tuple[str, bytes]]]] = []
    deadline = time.monotonic() + timeout_s
    while len(found) < expected and time.monotonic() < deadline:
        for message in consumer.consume(500, 0.5):
            if message.error() is None:
                found.append((message.value(), message.headers() or []))
    consumer.close()
    return found
