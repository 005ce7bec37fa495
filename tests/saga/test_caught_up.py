"""The deadline gate on the real broker: a partition is ready once the tracker's consumer has
reached, on every input topic, the end it had when first asked (``choreo._saga.caught_up``)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import confluent_kafka as ck
import pytest
from confluent_kafka.admin import AdminClient, NewTopic

from choreo._saga.caught_up import ReadGate

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
    """Read exactly ``expected`` records (or for 20 s); how many came."""
    read = 0
    deadline = time.monotonic() + 20
    while read < expected and time.monotonic() < deadline:
        batch = consumer.consume(expected - read, timeout=0.2)
        read += sum(1 for m in batch if m.error() is None)
    return read


def test_a_partition_is_ready_once_every_topic_was_read_to_its_end_when_asked_first(
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
    gate = ReadGate(topics)
    try:
        consumer.assign([ck.TopicPartition(t, p) for t in topics for p in (0, 1)])
        # Nothing fetched yet: partition 0 holds unread records, partition 1 is empty.
        assert gate.ready(consumer, {0, 1}) == {1}
        for _ in range(2):  # more arrive after the deadline fell due: not waited for
            plain.produce(first, b"x", partition=0)
        plain.flush(10)
        assert drain(consumer, 3) == 3
        assert gate.ready(consumer, {0}) == {0}
        assert gate.ready(consumer, {0}) == set()  # a new deadline: a new end to reach
        assert drain(consumer, 2) == 2
        assert gate.ready(consumer, {0, 1}) == {0, 1}

        plain.produce(second, b"y", partition=1)  # written on the other topic only
        plain.flush(10)
        assert gate.ready(consumer, {0, 1}) == {0}
        assert drain(consumer, 1) == 1
        assert gate.ready(consumer, {1}) == {1}

        writer = ck.Producer({"bootstrap.servers": kafka, "transactional.id": unique_name("tx")})
        writer.init_transactions(15)
        writer.begin_transaction()
        writer.produce(first, b"z", partition=1)
        writer.flush(10)
        # For a read_committed reader the end is the last stable offset: a record in an open
        # transaction is not written yet, and does not hold deadlines back.
        assert gate.ready(consumer, {0, 1}) == {0, 1}
        writer.commit_transaction(15)
        assert gate.ready(consumer, {0, 1}) == {0}  # committed, not read yet
        assert drain(consumer, 1) == 1
        # The position passes the commit marker once the fetcher has read it: a poll or two.
        deadline = time.monotonic() + 20
        while gate.ready(consumer, {1}) != {1}:
            assert time.monotonic() < deadline, "never past the commit marker"
            assert consumer.consume(1, timeout=0.2) == []
    finally:
        consumer.close()
