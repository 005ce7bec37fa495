"""A dead letter whose value was cut to fit the DLQ is never replayed as if it were whole."""

from __future__ import annotations

import time

import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic
from dlq_kit import run_dlq

from choreo._dlq.reader import read
from choreo._runtime import dead_letters as dlq

pytestmark = pytest.mark.stack


def test_a_cut_value_is_refused_with_where_the_whole_record_is(kafka: str) -> None:
    topic = f"shop.cut-{time.time_ns()}"
    dead = dlq.dlq_topic("placer", topic)
    admin = AdminClient({"bootstrap.servers": kafka})
    for future in admin.create_topics([NewTopic(t, 1, 1) for t in (topic, dead)]).values():
        future.result(30)
    producer = Producer({"bootstrap.servers": kafka})
    where = [(dlq.TOPIC, topic.encode()), (dlq.PARTITION, b"0"), (dlq.OFFSET, b"41")]
    producer.produce(dead, key=b"whole", value=b"all of it", headers=where)
    producer.produce(
        dead,
        key=b"cut",
        value=b"x" * 100,
        headers=[*where, (dlq.REASON, b"too-large"), (dlq.VALUE_BYTES, b"1200000")],
    )
    producer.flush(30)

    result = run_dlq(kafka, "replay", dead)
    out = result.stdout + result.stderr
    assert "only the first 100 of its 1200000 value bytes were kept" in out, out
    assert f"{topic}[0]@41" in out
    assert [r.key for r in read({"bootstrap.servers": kafka}, topic)] == [b"whole"]
