"""Reading dead-letter topics from end to end without joining a consumer group.

Tools read with ``assign`` from the low to the high watermark, so inspecting a
DLQ never moves anybody's offsets and always sees what is there now.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

from confluent_kafka import Consumer, KafkaError, Message, TopicPartition
from confluent_kafka.admin import AdminClient

from choreo import _headers
from choreo._errors import TransportError
from choreo._runtime import dead_letters as dlq
from choreo._transport.base import Headers
from choreo._transport.watermarks import watermarks

READ_TIMEOUT_S = 10.0
POLL_S = 0.2
DENIED = frozenset({KafkaError.TOPIC_AUTHORIZATION_FAILED, KafkaError.CLUSTER_AUTHORIZATION_FAILED})
"""Fetch errors that waiting cannot cure: reading on would show an empty topic (and exit 0)
where the truth is that this principal may not read it. Others are retried by the client; a
denied group is no obstacle (the tools assign partitions and commit nothing, but the client
still looks up the coordinator of the ``group.id`` it must have)."""
GRANT_HINT = "(`choreo acl apply --replay` lets a service read and replay its own DLQs)"
BATCH = 500
"""Records taken per consume: the end check (a position per open partition) runs once each."""


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
                return _headers.lenient_text(value)
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
        """When it was parked, always timezone-aware.

        Any client allowed to write the DLQ can put any bytes in the header, so one that is not
        an ISO time falls back to the record's own timestamp, and one without a zone is UTC.
        """
        try:
            parsed = datetime.fromisoformat(self.header(dlq.FAILED_AT) or "")
        except ValueError:
            return datetime.fromtimestamp(self.timestamp_ms / 1000, UTC)
        return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)

    @property
    def original_headers(self) -> Headers:
        """The headers the record had before it was parked (what a replay sends back)."""
        return [(k, v) for k, v in self.headers if not k.startswith("choreo_dlq_")]


def dlq_topics(settings: dict[str, Any]) -> list[str]:
    topics = AdminClient(settings).list_topics(timeout=READ_TIMEOUT_S).topics
    return sorted(name for name in topics if name.startswith(dlq.PREFIX))


def read_partitions(consumer: Consumer, partitions: Iterable[TopicPartition]) -> Iterator[Message]:
    """What the partitions hold now, each from its low watermark (or the partition's own offset,
    if set and higher) to its high watermark (assigned, no group).

    All are assigned at once and read together: one partition after another on one consumer
    costs a fetch wait each (about 1.5 s), which over a cluster's hundreds of DLQ topics adds
    up to minutes. Records come in offset order within each partition, interleaved across them.
    A partition is done when the consumer's position reaches its high watermark, not when a
    record at ``high - 1`` arrives: a transactional writer (the saga tracker) ends with a commit
    marker there, which is never delivered as a record.
    """
    ends: dict[tuple[str, int], int] = {}
    starts: list[TopicPartition] = []
    for tp in partitions:
        low, high = watermarks(consumer, tp, READ_TIMEOUT_S)
        start = max(low, tp.offset)  # an unset offset is negative
        if start < high:
            ends[(tp.topic, tp.partition)] = high
            starts.append(TopicPartition(tp.topic, tp.partition, start))
    if not starts:
        return
    consumer.assign(starts)
    deadline = time.monotonic() + READ_TIMEOUT_S
    while ends and time.monotonic() < deadline:
        messages = consumer.consume(BATCH, POLL_S)
        for message in messages:
            error = message.error()
            if error is None:
                deadline = time.monotonic() + READ_TIMEOUT_S
                yield message
            elif error.code() in DENIED or error.fatal():
                where = message.topic() or ", ".join(sorted({t for t, _ in ends}))
                raise TransportError(f"reading {where}: {error.str()} {GRANT_HINT}")
        for position in consumer.position([TopicPartition(t, p) for t, p in ends]):
            if position.offset >= ends[(position.topic, position.partition)]:
                del ends[(position.topic, position.partition)]


def read(settings: dict[str, Any], *topics: str) -> Iterator[DeadLetter]:
    """Every record currently in ``topics``, in offset order within each partition."""
    consumer = Consumer({**settings, "group.id": "choreo-dlq-reader", "enable.auto.commit": False})
    try:
        metadata = consumer.list_topics(timeout=READ_TIMEOUT_S).topics
        missing = [t for t in topics if t not in metadata]
        if missing:
            raise TransportError(f"no such topic: {', '.join(missing)}")
        partitions = [TopicPartition(t, p) for t in topics for p in sorted(metadata[t].partitions)]
        for message in read_partitions(consumer, partitions):
            yield DeadLetter(
                topic=cast(str, message.topic()),
                partition=cast(int, message.partition()),
                offset=cast(int, message.offset()),
                key=message.key(),
                value=message.value(),
                headers=cast(Headers, list(message.headers() or [])),
                timestamp_ms=message.timestamp()[1],
            )
    finally:
        consumer.close()
