"""A changelog partition read on from an offset, onto the states held up to there (a tracker's
partition kept through a rebalance), on the real broker."""

from __future__ import annotations

import threading
import time
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


def _open_transaction(kafka: str, topic: str) -> Producer:
    """A transaction holding ``(x, x1)`` on ``topic``, written but neither committed nor
    aborted: its records sit past the partition's stable offset."""
    producer = Producer(
        {"bootstrap.servers": kafka, "transactional.id": f"open-{uuid.uuid4().hex[:8]}"}
    )
    producer.init_transactions(30)
    producer.begin_transaction()
    producer.produce(topic, key=b"x", value=b"x1")
    assert producer.flush(30) == 0
    return producer


def test_a_transaction_open_as_the_restore_starts_is_read_once_it_commits(kafka: str) -> None:
    """Its marker can reach the changelog after the input offsets it committed are readable:
    a restore stopping at the stable offset would lose its states."""
    topic = _topic(kafka, RECORDS)
    producer = _open_transaction(kafka, topic)
    committer = threading.Timer(1.0, producer.commit_transaction)
    committer.start()
    began = time.monotonic()
    read = read_changelog_bytes({"bootstrap.servers": kafka}, topic, [0], settle_s=20)
    waited = time.monotonic() - began
    committer.join()
    assert read == {0: {"d": b"d0", "a": b"a3", "c": b"c1", "x": b"x1"}}
    assert 0.9 < waited < 15


def test_a_transaction_still_open_is_waited_for_only_so_long(kafka: str) -> None:
    topic = _topic(kafka, RECORDS)
    producer = _open_transaction(kafka, topic)
    try:
        began = time.monotonic()
        read = read_changelog_bytes({"bootstrap.servers": kafka}, topic, [0], settle_s=2)
        waited = time.monotonic() - began
        assert read == {0: {"d": b"d0", "a": b"a3", "c": b"c1"}}
        assert 1.9 < waited < 10
        # The CLI and the console read without waiting: what is committed now.
        began = time.monotonic()
        assert read_changelog_bytes({"bootstrap.servers": kafka}, topic, [0]) == read
        assert time.monotonic() - began < 1.9
    finally:
        producer.abort_transaction(30)
    # Aborted meanwhile: a restore that waits finds nothing to wait for.
    assert read_changelog_bytes({"bootstrap.servers": kafka}, topic, [0], settle_s=20) == read


def test_a_large_transaction_committing_near_the_deadline_is_read_whole_or_not_at_all(
    kafka: str,
) -> None:
    """Its records still arriving as the wait runs out: every one is read (it committed in
    time), or none is (it was given up); never the first consumes' worth (a review found 1,000
    of 100,000 kept, with a log line saying none were)."""
    topic = _topic(kafka, RECORDS)
    producer = Producer(
        {
            "bootstrap.servers": kafka,
            "transactional.id": f"open-{uuid.uuid4().hex[:8]}",
            "linger.ms": 50,
        }
    )
    producer.init_transactions(30)
    producer.begin_transaction()
    for i in range(20_000):
        producer.produce(topic, key=b"k%d" % i, value=b"v")
    assert producer.flush(60) == 0
    committer = threading.Timer(1.0, producer.commit_transaction)
    committer.start()

    def slowly(value: bytes) -> bytes:
        """A record taken at 0.1 ms (a restore packs each): the read outlasts the wait."""
        time.sleep(0.0001)
        return value

    read = read_changelog_bytes({"bootstrap.servers": kafka}, topic, [0], slowly, settle_s=1.5)
    committer.join()
    assert len(read[0]) in (3, 3 + 20_000), len(read[0])
