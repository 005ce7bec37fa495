"""A changelog partition read on from an offset, onto the states held up to there (a tracker's
partition kept through a rebalance), on the real broker."""

from __future__ import annotations

import uuid

import pytest
from confluent_kafka import Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from choreo._saga.store import read_changelog_bytes

pytestmark = pytest.mark.stack


def _topic(kafka: str, records: list[tuple[bytes, bytes | None]]) -> str:
    """A fresh one-partition topic holding ``records`` (offsets 0, 1, ...)."""
    topic = f"resume-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": kafka})
    admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])[topic].result()
    producer = Producer({"bootstrap.servers": kafka, "enable.idempotence": True})
    for key, value in records:
        producer.produce(topic, key=key, value=value)
    assert producer.flush(30) == 0
    return topic


RECORDS: list[tuple[bytes, bytes | None]] = [
    (b"d", b"d0"),
    (b"e", b"e0"),
    (b"a", b"a1"),
    (b"b", b"b1"),
    (b"e", None),
    (b"a", b"a2"),  # offset 5: the held states are those up to here
    (b"b", None),
    (b"c", b"c1"),
    (b"a", b"a3"),
]
HELD = {"a": b"a2", "b": b"b1", "d": b"d-held"}
"""What a tracker holds after offset 5 (``d`` as its memory has it: a read from the start
would make it ``d0``, and bring back ``e``)."""


def test_read_on_from_an_offset_applies_only_what_came_after_onto_the_held_states(
    kafka: str,
) -> None:
    topic = _topic(kafka, RECORDS)
    read = read_changelog_bytes(
        {"bootstrap.servers": kafka}, topic, [0], resume={0: (6, dict(HELD))}
    )
    assert read == {0: {"a": b"a3", "c": b"c1", "d": b"d-held"}}
    at_the_end = read_changelog_bytes(
        {"bootstrap.servers": kafka}, topic, [], resume={0: (9, dict(HELD))}
    )
    assert at_the_end == {0: HELD}  # nothing written since: nothing read


def test_records_deleted_past_the_offset_make_it_a_full_read(kafka: str) -> None:
    topic = _topic(kafka, RECORDS)
    admin = AdminClient({"bootstrap.servers": kafka})
    futures = admin.delete_records([TopicPartition(topic, 0, 7)])
    for future in futures.values():
        future.result()
    read = read_changelog_bytes(
        {"bootstrap.servers": kafka}, topic, [0], resume={0: (6, dict(HELD))}
    )
    assert read == {0: {"c": b"c1", "a": b"a3"}}  # from the new start; the held ones dropped


def test_an_offset_past_the_end_makes_it_a_full_read(kafka: str) -> None:
    """The log is shorter than when the states were held (truncated, or made anew)."""
    topic = _topic(kafka, RECORDS)
    read = read_changelog_bytes(
        {"bootstrap.servers": kafka}, topic, [0], resume={0: (50, dict(HELD))}
    )
    assert read == {0: {"d": b"d0", "a": b"a3", "c": b"c1"}}
