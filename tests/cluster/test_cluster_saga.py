"""The saga tracker while a broker is SIGKILLed: the one leading most of its input partitions,
or the one coordinating its group.

The sagas run with their short deadlines, so the deadline gate, the compensation re-sends
and the tracker's transactions all meet the failover. With its coordinator gone and the
shortest session timeout, librdkafka times the tracker's static membership out before the
group moves, rejoins, and may be fenced by its own earlier member id (librdkafka #3437): the
tracker must take that for what it is and carry on, not stop as if a twin had started.
"""

from __future__ import annotations

import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from cluster_kit import coordinator, leaders, wait_fully_replicated

from choreo._saga.topology import tracker_name
from choreo.pytest_plugin import KafkaCluster

# saga_defs is imported by name, as the tracker process imports it (its PYTHONPATH).
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "saga"))
from saga.conftest import World, answer_compensations
from saga_script import check_outcomes, script

pytestmark = pytest.mark.stack
SAGAS = 300


@pytest.mark.timeout(600)
@pytest.mark.parametrize("victim", ["input leader", "group coordinator"])
def test_every_saga_ends_as_expected_through_a_broker_kill(
    kafka_cluster: KafkaCluster, kafka: str, tmp_path: Path, victim: str
) -> None:
    coordinated = victim == "group coordinator"
    env = {"CHOREO_SESSION_TIMEOUT_S": "6"} if coordinated else {}
    with World(kafka, tmp_path, **env) as world:
        answer_compensations(world)
        tracker = world.start_tracker("a")
        ids = [f"c{i}-{world.name}" for i in range(SAGAS)]
        orders = world.catalog.topic_of("shop.orders.OrderPlaced").name
        for i, o in enumerate(ids):
            for event in script(i, o):
                world.publish(event)  # type: ignore[arg-type]
            if i == SAGAS // 3:
                world.wait(lambda o=o: o in world.states(), timeout=90, what=f"saga {o}")
                if coordinated:
                    node = coordinator(kafka, tracker_name(world.name))
                else:
                    node = Counter(leaders(kafka, orders).values()).most_common(1)[0][0]
                kafka_cluster.kill(f"kafka-{node}")
                killed_at = time.monotonic()
        resent = check_outcomes(world, ids, timeout_s=180)
        ended_s = time.monotonic() - killed_at
        kafka_cluster.start()
        wait_fully_replicated(kafka, [orders])
        assert tracker.poll() is None, "the tracker exited"
        logs = world.logs()
        timed_out, rejoined = logs.count("session timed out"), logs.count("a new consumer joins")
        print(
            f"{SAGAS} sagas through the kill of kafka-{node} ({victim}): all ended as expected "
            f"{ended_s:.0f}s after the kill; compensations re-sent with their first ce_id: "
            f"{resent}; the tracker's session timed out {timed_out} time(s), and it rejoined after "
            f"fencing itself {rejoined} time(s)"
        )
