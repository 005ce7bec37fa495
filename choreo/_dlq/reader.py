"""Reading dead-letter topics from end to end without joining a consumer group.

Tools read with ``assign`` from the low to the high watermark, so inspecting a
DLQ never moves anybody's offsets and always sees what is there now.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

from confluent_kafka import Consumer, Message, TopicPartition
from confluent_kafka.admin import AdminClient

from choreo._runtime import dead_letters as dlq
from choreo._transport.base import Headers
from choreo._transport.watermarks import watermarks

READ_TIMEOUT_S = 10.0
POLL_S = 0.2


@dataclass(frozen=True)
class DeadLetter:
    """One parked record and why it was parked."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Headers
    timestamp_ms: int

    def header(self, name: str) -> str | None:
        for key, value in reversed(self.headers):
            if key == name:
                return value.decode(errors="replace")
        return None

    @property
    def reason(self) -> str:
        return self.header(dlq.REASON) or "unknown"

    @property
    def error_type(self) -> str:
        return self.header(dlq.ERROR_TYPE) or "unknown"

    @property
    def source_topic(self) -> str | None:
        return self.header(dlq.TOPIC)

    @property
    def failed_at(self) -> datetime:
        text = self.header(dlq.FAILED_AT)
        if text:
            return datetime.fromisoformat(text)
        return datetime.fromtimestamp(self.timestamp_ms / 1000, UTC)

    @property
    def original_headers(self) -> Headers:
        """The headers the record had before it was parked (what a replay sends back)."""
        return [(k, v) for k, v in self.headers if not k.startswith("choreo_dlq_")]


def dlq_topics(settings: dict[str, Any]) -> list[str]:
    topics = AdminClient(settings).list_topics(timeout=READ_TIMEOUT_S).topics
    return sorted(name for name in topics if name.startswith(dlq.PREFIX))


def read_partition(consumer: Consumer, topic: str, partition: int) -> Iterator[Message]:
    """What the partition holds now, from its low to its high watermark (assigned, no group).

    Done when the consumer's position reaches the high watermark, not when a record at
    ``high - 1`` arrives: a transactional writer (the saga tracker) ends with a commit marker
    there, which is never delivered as a record.
    """
    tp = TopicPartition(topic, partition)
    low, high = watermarks(consumer, tp, READ_TIMEOUT_S)
    if low >= high:
        return
    consumer.assign([TopicPartition(topic, partition, low)])
    deadline = time.monotonic() + READ_TIMEOUT_S
    while time.monotonic() < deadline:
        message = consumer.poll(POLL_S)
        if message is not None and message.error() is None:
            deadline = time.monotonic() + READ_TIMEOUT_S
            yield message
        [position] = consumer.position([tp])
        if position.offset >= high:
            return


def read(settings: dict[str, Any], topic: str) -> Iterator[DeadLetter]:
    """Every record currently in ``topic``, partition by partition, in offset order."""
    consumer = Consumer({**settings, "group.id": "choreo-dlq-reader", "enable.auto.commit": False})
    try:
        metadata = consumer.list_topics(topic, timeout=READ_TIMEOUT_S).topics[topic]
        for partition in sorted(metadata.partitions):
            for message in read_partition(consumer, topic, partition):
                yield DeadLetter(
                    topic=topic,
                    partition=partition,
                    offset=cast(int, message.offset()),
                    key=message.key(),
                    value=message.value(),
                    headers=cast(Headers, list(message.headers() or [])),
                    timestamp_ms=message.timestamp()[1],
                )
    finally:
        consumer.close()
