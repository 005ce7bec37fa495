"""The deadline gate on the real broker: a partition counts as read only when the tracker's
consumer has reached the end of it on every input topic, markers and open transactions
included (``choreo._saga.caught_up``)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import confluent_kafka as ck
import pytest
from confluent_kafka.admin import AdminClient, NewTopic

from choreo._saga.caught_up import read_to_end

pytestmark = pytest.mark.stack


@pytest.fixture
def topics(kafka: str, unique_name: Callable[[str], str]) -> Iterator[list[str]]:
    names = [unique_name("gate-a"), unique_name("gate-b")]
    admin = AdminClient({"bootstrap.servers": kafka})
    for future in admin.create_topics([NewTopic(n, num_partitions=2) for n in names]).values():
        future.result(15)
    yield names
    admin.delete_topics(names)


def drain(consumer: ck.Consumer, expected: int) -> int:
    """Read until ``expected`` records came (or 20 s passed); how many did."""
    read = 0
    deadline = time.monotonic() + 20
    while read < expected and time.monotonic() < deadline:
        read += sum(1 for m in consumer.consume(100, timeout=0.2) if m.error() is None)
    return read


def test_a_partition_counts_only_once_every_topic_was_read_to_its_end(
    kafka: str, topics: list[str], unique_name: Callable[[str], str]
) -> None:
    first, second = topics
    plain = ck.Producer({"bootstrap.servers": kafka})
    for _ in range(3):
        plain.produce(first, b"x", partition=0)
    plain.flush(10)
    consumer = ck.Consumer(
        {
            "bootstrap.servers": kafka,
            "group.id": unique_name("gate"),
            "isolation.level": "read_committed",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    try:
        consumer.assign([ck.TopicPartition(t, p) for t in topics for p in (0, 1)])
        # Nothing fetched yet: partition 0 holds unread records, partition 1 is empty.
        assert read_to_end(consumer, topics, {0, 1}) == {1}
        assert drain(consumer, 3) == 3
        assert read_to_end(consumer, topics, {0, 1}) == {0, 1}

        plain.produce(second, b"y", partition=1)  # written on the other topic only
        plain.flush(10)
        assert read_to_end(consumer, topics, {0, 1}) == {0}
        assert drain(consumer, 1) == 1

        writer = ck.Producer({"bootstrap.servers": kafka, "transactional.id": unique_name("tx")})
        writer.init_transactions(15)
        writer.begin_transaction()
        writer.produce(first, b"z", partition=1)
        writer.flush(10)
        # For a read_committed reader the end is the last stable offset: a record in an open
        # transaction is not written yet, and does not hold deadlines back.
        assert read_to_end(consumer, topics, {0, 1}) == {0, 1}
        writer.commit_transaction(15)
        assert read_to_end(consumer, topics, {0, 1}) == {0}  # committed, not read yet
        assert drain(consumer, 1) == 1
        assert read_to_end(consumer, topics, {0, 1}) == {0, 1}  # past the commit marker
    finally:
        consumer.close()
