"""A replayed record lands on the partition of its key's other records: replay places keys with
murmur2, as choreo's producers on both Kafka transports do (and Java clients, Connect's outbox
relay). librdkafka's own default (CRC32) would scatter them and break per-key order."""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict

import pytest
from confluent_kafka.admin import AdminClient, NewTopic
from dlq_kit import run_dlq

from choreo._config import KafkaConfig
from choreo._dlq.reader import read
from choreo._dlq.replay import REPLAYED_FROM
from choreo._runtime import dead_letters as dlq
from choreo._transport.memory import partition_for_key
from choreo._transport.registry import make_transport

pytestmark = pytest.mark.stack
PARTITIONS = 7
KEYS = [f"order-{i}".encode() for i in range(24)]


def _create(kafka: str, *topics: str) -> None:
    admin = AdminClient({"bootstrap.servers": kafka})
    futures = admin.create_topics([NewTopic(t, PARTITIONS, 1) for t in topics])
    for future in futures.values():
        future.result(30)


async def _send_with(transport_name: str, kafka: str, topic: str, dead: str) -> None:
    """Each key once to ``topic``, and (first transport only) parked in ``dead``, through the
    transport's producer: the one the publisher, ``ctx.emit``, retries and dead letters use."""
    transport = make_transport(transport_name, KafkaConfig(bootstrap_servers=kafka))
    producer = transport.producer(f"test-{transport_name}")
    for key in KEYS:
        await producer.send(topic, key, b"original", [])
        if transport_name == "confluent":
            await producer.send(dead, key, b"parked", [(dlq.TOPIC, topic.encode())])
    await producer.flush()
    await producer.close()


def test_replayed_records_join_their_keys_partition(kafka: str) -> None:
    topic = f"shop.partitions-{time.time_ns()}"
    dead = dlq.dlq_topic("placer", topic)
    _create(kafka, topic, dead)
    for name in ("confluent", "aiokafka"):
        asyncio.run(_send_with(name, kafka, topic, dead))

    result = run_dlq(kafka, "replay", dead)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"{len(KEYS)} selected, replayed {len(KEYS)} to {topic}")

    placed: dict[bytes, set[int]] = defaultdict(set)
    replayed = 0
    for record in read({"bootstrap.servers": kafka}, topic):
        assert record.key is not None
        placed[record.key].add(record.partition)
        replayed += record.header(REPLAYED_FROM) is not None
    assert replayed == len(KEYS)
    assert {key: partitions for key, partitions in placed.items() if len(partitions) > 1} == {}
    expected = {key: partition_for_key(key, PARTITIONS) for key in KEYS}  # Kafka's murmur2
    assert {key: partitions.pop() for key, partitions in placed.items()} == expected
