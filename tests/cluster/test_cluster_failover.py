"""A replicated cluster loses brokers under load; a relaying service loses and repeats nothing.

The service (at least once, its effects in its idempotency store's transaction) reads a
seeded, paced stream of orders while the broker leading most of its partitions is
SIGKILLed and restarted, then all three are restarted one at a time.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import subprocess
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
from cluster_kit import OrderFeed, leaders, outputs_by_source, wait_fully_replicated, wait_until
from confluent_kafka import Consumer, TopicPartition

from choreo import KafkaConfig
from choreo._runtime.dead_letters import dlq_topic
from choreo._schemas import Catalog
from choreo._transport.confluent import ConfluentTransport
from choreo.pytest_plugin import KafkaCluster
from services.events import StockReservationFailed

pytestmark = pytest.mark.stack
SERVICE = "relay-once"


def ensure_catalog_topics(kafka: str, catalog: Catalog) -> None:
    """Created as choreo creates them: the catalog's settings, the cluster's replication."""
    transport = ConfluentTransport(KafkaConfig(bootstrap_servers=kafka))
    asyncio.run(transport.ensure_topics([s.topic_config() for s in catalog.topics.values()]))


def effects(db: Path) -> list[tuple[str, float]]:
    if not db.exists():
        return []
    with sqlite3.connect(db) as connection:
        try:
            return list(connection.execute("SELECT order_id, at FROM effects"))
        except sqlite3.OperationalError:  # the service has not made its table yet
            return []


def _pause_s(handled: list[tuple[str, float]], feed: OrderFeed, led: set[int], t: float) -> float:
    """Kill to the first handling of an order sent after the kill to a partition it led."""
    after = [
        at
        for order, at in handled
        if (i := int(order[2:])) in feed.partition_of
        and feed.partition_of[i] in led
        and feed.sent_at[i] > t
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
    kafka_cluster: KafkaCluster,
    kafka: str,
    isolated_schemas: Path,
    tmp_path: Path,
    run_service: Callable[..., subprocess.Popen[str]],
) -> None:
    seed = int(os.environ.get("CHOREO_TEST_SEED", time.time_ns() % 100_000))
    print(f"seed {seed} (CHOREO_TEST_SEED={seed} repeats this run's keys and pacing)")
    catalog = Catalog.load(isolated_schemas)
    ensure_catalog_topics(kafka, catalog)
    feed = OrderFeed(kafka, catalog, seed)
    outputs = catalog.topic_of(StockReservationFailed.event_type).name
    db = tmp_path / "once.db"
    service = run_service("tests.cluster.relay_once", isolated_schemas, RELAY_DB=str(db))
    feed.start()
    wait_until(lambda: len(effects(db)) >= 300, 90, "the first 300 effects")

    led = leaders(kafka, feed.topic)
    victim_id = Counter(led.values()).most_common(1)[0][0]
    victim_partitions = {p for p, leader in led.items() if leader == victim_id}
    killed_at = time.time()
    kafka_cluster.kill(f"kafka-{victim_id}")
    at_kill = len(feed.sent_at)
    wait_until(lambda: len(effects(db)) >= at_kill + 200, 90, "handling past the kill")
    kafka_cluster.start()
    wait_fully_replicated(kafka, [feed.topic, outputs])

    for node in kafka_cluster.node_ids:
        kafka_cluster.stop(node)
        kafka_cluster.start()
        wait_fully_replicated(kafka, [feed.topic, outputs])

    sent = feed.stop()
    assert not feed.errors, f"the producer lost records: {feed.errors}"
    assert len(feed.partition_of) == sent
    wanted = {f"o-{i}" for i in range(sent)}
    wait_until(lambda: {o for o, _ in effects(db)} >= wanted, 120, "every effect")

    counts = Counter(order for order, _ in effects(db))
    assert set(counts) == wanted and set(counts.values()) == {1}, "an effect missing or twice"
    seen = outputs_by_source(kafka, outputs, sent, (SERVICE,))[SERVICE]
    assert set(seen) == {f"in-{seed}-{i}" for i in range(sent)}, "an output is missing"
    assert _parked(kafka, [dlq_topic(SERVICE, feed.topic)]) == 0, "a good record was parked"
    assert service.poll() is None, "the service exited"

    pause = _pause_s(effects(db), feed, victim_partitions, killed_at)
    print(
        f"{sent} orders; leader kafka-{victim_id} (partitions {sorted(victim_partitions)}) "
        f"killed: handled again after {pause:.1f}s; outputs repeated: {sum(seen.values()) - sent}"
    )
