"""Empty a dead-letter topic once its records are dealt with (Kafka's DeleteRecords)."""

from __future__ import annotations

from typing import Any

from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient

from choreo._dlq.reader import READ_TIMEOUT_S
from choreo._transport.watermarks import watermarks


def purge(settings: dict[str, Any], topic: str, *, dry_run: bool = False) -> int:
    """Delete every record now in ``topic``; returns how many there were."""
    consumer = Consumer({**settings, "group.id": "choreo-dlq-reader"})
    try:
        partitions = consumer.list_topics(topic, timeout=READ_TIMEOUT_S).topics[topic].partitions
        ends = {
            p: watermarks(consumer, TopicPartition(topic, p), READ_TIMEOUT_S) for p in partitions
        }
    finally:
        consumer.close()
    count = sum(high - low for low, high in ends.values())
    if dry_run or count == 0:
        return count
    admin = AdminClient(settings)
    futures = admin.delete_records(
        [TopicPartition(topic, p, high) for p, (_, high) in ends.items()]
    )
    for future in futures.values():
        future.result(READ_TIMEOUT_S)
    return count
