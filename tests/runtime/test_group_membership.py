"""The group generation and member id read from librdkafka's group metadata, on the real broker:
the saga tracker keeps a partition's states through a rebalance only into the very next
generation of the same member."""

from __future__ import annotations

import time
import uuid

import confluent_kafka as ck
import pytest
from confluent_kafka.admin import AdminClient, NewTopic

from choreo._transport.confluent import group_membership

pytestmark = pytest.mark.stack


def _member(kafka: str, group: str, topic: str) -> ck.Consumer:
    consumer = ck.Consumer(
        {"bootstrap.servers": kafka, "group.id": group, "partition.assignment.strategy": "range"}
    )
    consumer.subscribe([topic])
    return consumer


def _until_assigned(*consumers: ck.Consumer) -> None:
    deadline = time.monotonic() + 60
    while not all(c.assignment() for c in consumers):
        assert time.monotonic() < deadline, "no assignment in 60 s"
        for consumer in consumers:
            consumer.poll(0.1)


def test_each_rebalance_is_the_next_generation_of_the_same_member(kafka: str) -> None:
    topic, group = f"membership-{uuid.uuid4().hex[:8]}", f"g-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": kafka})
    admin.create_topics([NewTopic(topic, num_partitions=2, replication_factor=1)])[topic].result()
    first = _member(kafka, group, topic)
    assert group_membership(first) == (-1, "")  # not joined yet
    _until_assigned(first)
    joined = group_membership(first)
    assert joined is not None and joined[0] >= 1 and joined[1].startswith("rdkafka-")
    second = _member(kafka, group, topic)
    try:
        _until_assigned(first, second)
        while len(first.assignment()) != 1:
            first.poll(0.1)
        assert group_membership(first) == (joined[0] + 1, joined[1])
        other = group_membership(second)
        assert other is not None and other[1] not in ("", joined[1])
    finally:
        second.close()
        first.close()
