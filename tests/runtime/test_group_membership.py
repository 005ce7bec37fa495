"""The group generation and member id read from librdkafka's group metadata, on the real broker:
the saga tracker keeps a partition's states through a rebalance only when its assignment comes
in the very next generation after its revocation, to the same member."""

from __future__ import annotations

import time
import uuid

import confluent_kafka as ck
import pytest
from confluent_kafka.admin import AdminClient, NewTopic

from choreo._transport.confluent import group_membership

pytestmark = pytest.mark.stack


class Member:
    """A consumer noting its membership as each rebalance callback sees it, as the tracker's do."""

    def __init__(self, kafka: str, group: str, topic: str) -> None:
        self.seen: list[tuple[str, tuple[int, str] | None]] = []
        self.consumer = ck.Consumer(
            {
                "bootstrap.servers": kafka,
                "group.id": group,
                "partition.assignment.strategy": "range",
            }
        )
        self.consumer.subscribe([topic], on_assign=self._assigned, on_revoke=self._revoked)

    def _assigned(self, consumer: ck.Consumer, partitions: list[ck.TopicPartition]) -> None:
        self.seen.append(("assign", group_membership(consumer)))

    def _revoked(self, consumer: ck.Consumer, partitions: list[ck.TopicPartition]) -> None:
        self.seen.append(("revoke", group_membership(consumer)))


def _poll_until(members: list[Member], done: object) -> None:
    deadline = time.monotonic() + 60
    while not done():  # type: ignore[operator]
        assert time.monotonic() < deadline, [m.seen for m in members]
        for member in members:
            member.consumer.poll(0.1)


def test_an_assignment_after_a_revocation_is_the_next_generation_of_the_same_member(
    kafka: str,
) -> None:
    topic, group = f"membership-{uuid.uuid4().hex[:8]}", f"g-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": kafka})
    admin.create_topics([NewTopic(topic, num_partitions=2, replication_factor=1)])[topic].result()
    first = Member(kafka, group, topic)
    assert group_membership(first.consumer) == (-1, "")  # not joined yet
    _poll_until([first], lambda: first.seen)
    second = Member(kafka, group, topic)
    try:
        _poll_until([first, second], lambda: len(first.seen) >= 3 and second.seen)
        (_, joined), (_, revoked), (_, assigned) = first.seen[:3]
        assert [what for what, _ in first.seen[:3]] == ["assign", "revoke", "assign"]
        assert joined is not None and joined[0] >= 1 and joined[1].startswith("rdkafka-")
        assert revoked == joined  # revoked in the generation it was assigned in
        assert assigned == (joined[0] + 1, joined[1])
        other = second.seen[0][1]
        assert other is not None and other[1] not in ("", joined[1])
    finally:
        second.consumer.close()
        first.consumer.close()
