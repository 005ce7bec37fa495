"""The saga tracker while the broker leading most of its input partitions is SIGKILLed.

The sagas run with their short deadlines, so the deadline gate, the compensation re-sends
and the tracker's transactions all meet the failover.
"""

from __future__ import annotations

import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from cluster_kit import leaders, wait_fully_replicated

from choreo.pytest_plugin import KafkaCluster

# saga_defs is imported by name, as the tracker process imports it (its PYTHONPATH).
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "saga"))
from saga.conftest import World, answer_compensations
from saga_script import check_outcomes, script

pytestmark = pytest.mark.stack
SAGAS = 300


@pytest.mark.timeout(600)
def test_every_saga_ends_as_expected_through_a_leader_kill(
    kafka_cluster: KafkaCluster, kafka: str, tmp_path: Path
) -> None:
    with World(kafka, tmp_path) as world:
        answer_compensations(world)
        tracker = world.start_tracker("a")
        ids = [f"c{i}-{world.name}" for i in range(SAGAS)]
        orders = world.catalog.topic_of("shop.orders.OrderPlaced").name
        for i, o in enumerate(ids):
            for event in script(i, o):
                world.publish(event)  # type: ignore[arg-type]
            if i == SAGAS // 3:
                world.wait(lambda o=o: o in world.states(), timeout=90, what=f"saga {o}")
                victim = Counter(leaders(kafka, orders).values()).most_common(1)[0][0]
                kafka_cluster.kill(f"kafka-{victim}")
                killed_at = time.monotonic()
        resent = check_outcomes(world, ids, timeout_s=180)
        ended_s = time.monotonic() - killed_at
        kafka_cluster.start()
        wait_fully_replicated(kafka, [orders])
        assert tracker.poll() is None, "the tracker exited"
        print(
            f"{SAGAS} sagas through the kill of kafka-{victim}: all ended as expected "
            f"{ended_s:.0f}s after the kill; compensations re-sent with their first ce_id: {resent}"
        )
