"""A replicated cluster loses brokers under load; the relays lose and repeat nothing.

Two services read one seeded, paced stream of orders: one at least once (its effects in
its idempotency store's transaction), one exactly once (Kafka transactions). The broker
leading most of the input partitions is SIGKILLed and restarted, then all three are
restarted one at a time.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterable

import pytest
from cluster_kit import (
    EXACT,
    RELAY,
    OrderFeed,
    Relaying,
    beyond_inputs,
    leaders,
    outputs_by_source,
    wait_fully_replicated,
    wait_until,
)
from confluent_kafka import Consumer, TopicPartition

from choreo._runtime.dead_letters import dlq_topic
from choreo.pytest_plugin import KafkaCluster

pytestmark = pytest.mark.stack


def _pause_s(
    handled: Iterable[tuple[int, float]], feed: OrderFeed, led: set[int], t: float
) -> float:
    """Kill to the first handling (order number, when) of an order sent after the kill to a
    partition the killed broker led."""
    after = [
        at
        for i, at in handled
        if i in feed.partition_of and feed.partition_of[i] in led and feed.sent_at[i] > t
    ]
    assert after, "nothing sent after the kill to the killed leader's partitions was handled"
    return min(after) - t


def _parked(kafka: str, topics: list[str]) -> int:
    consumer = Consumer({"bootstrap.servers": kafka, "group.id": "watermarks"})
    existing = consumer.list_topics(timeout=10).topics
    total = 0
    for topic in topics:
        for p in existing[topic].partitions if topic in existing else {}:
            total += consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
    consumer.close()
    return total


@pytest.mark.timeout(600)  # three JVMs restart in turn on a shared 2-core runner
def test_a_leader_kill_and_a_rolling_restart_under_load_lose_and_repeat_nothing(
    kafka_cluster: KafkaCluster, kafka: str, relaying: Relaying
) -> None:
    feed = OrderFeed(kafka, relaying.catalog, relaying.seed)
    once, exact = relaying.start_once(), relaying.start_exact()
    feed.start()
    wait_until(lambda: len(relaying.effects()) >= 300, 90, "the first 300 effects")

    led = leaders(kafka, feed.topic)
    victim_id = Counter(led.values()).most_common(1)[0][0]
    victim_partitions = {p for p, leader in led.items() if leader == victim_id}
    killed_at = time.time()
    kafka_cluster.kill(f"kafka-{victim_id}")
    at_kill = len(feed.sent_at)
    wait_until(lambda: len(relaying.effects()) >= at_kill + 200, 90, "handling past the kill")
    kafka_cluster.start()
    wait_fully_replicated(kafka, [feed.topic, relaying.outputs])

    for node in kafka_cluster.node_ids:
        kafka_cluster.stop(node)
        kafka_cluster.start()
        wait_fully_replicated(kafka, [feed.topic, relaying.outputs])

    sent = feed.stop()
    assert not feed.errors, f"the producer lost records: {feed.errors}"
    assert len(feed.partition_of) == sent
    inputs = feed.settle()
    wanted = {f"o-{i}" for i in inputs}

    def unhandled() -> list[str]:
        return sorted(wanted - {order for order, _ in relaying.effects()})

    wait_until(lambda: not unhandled(), 120, "every effect", lambda: f"none for {unhandled()}")

    counts = Counter(order for order, _ in relaying.effects())
    assert set(counts) == wanted and set(counts.values()) == {1}, "an effect missing or twice"
    seen = outputs_by_source(kafka, relaying.outputs, sent, (RELAY, EXACT))
    causes = {f"in-{relaying.seed}-{i}" for i in range(sent)}
    for source in (RELAY, EXACT):
        assert set(seen[source]) == causes, f"{source}: no output for {causes - set(seen[source])}"
    twice = beyond_inputs(seen[EXACT], inputs)
    assert not twice, f"exactly-once outputs seen more often than their input: {twice}"
    assert _parked(kafka, [dlq_topic(s, feed.topic) for s in (RELAY, EXACT)]) == 0, "parked"
    assert once.poll() is None, "the at-least-once relay exited"
    assert exact.poll() is None, "the exactly-once relay exited"

    handled_once = [(int(order[2:]), at) for order, at in relaying.effects()]
    handled_exact = [(int(c.rsplit("-", 1)[1]), min(at)) for c, at in seen[EXACT].items()]
    pause_once = _pause_s(handled_once, feed, victim_partitions, killed_at)
    pause_exact = _pause_s(handled_exact, feed, victim_partitions, killed_at)
    records = sum(inputs.values())
    repeated = sum(map(len, seen[RELAY].values())) - records
    redone = relaying.handled() - records
    print(
        f"{sent} orders in {records} input records (the feed's producer wrote "
        f"{records - sent} extra copies; orders it lost, sent again: {feed.resent}); "
        f"leader kafka-{victim_id} (partitions {sorted(victim_partitions)}) "
        f"killed: handled again after {pause_once:.1f}s (at least once), {pause_exact:.1f}s "
        f"(exactly once); at-least-once outputs repeated: {repeated}; exactly-once "
        f"handlings redone (aborted, invisible): {redone}"
    )
