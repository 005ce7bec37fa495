"""A tracker's producer that cannot abort is replaced, unless it was fenced: a second tracker
started with the same instance id stops the first (renewing would fence it back, and the two
would take the id from each other forever), and the second carries every saga on.

The replacement itself is proved through a broker kill in ``tests/cluster/test_cluster_saga.py``
(there an abort after a record timed out on a moving leader fails with ``INVALID_TXN_STATE``,
librdkafka #3297, which stopped the tracker before)."""

from __future__ import annotations

from pathlib import Path

import confluent_kafka as ck
import pytest
from conftest import World, answer_compensations
from saga_script import check_outcomes, script

from choreo._transport.confluent import is_fence

pytestmark = pytest.mark.stack


@pytest.mark.parametrize(
    ("code", "fence"),
    [
        (ck.KafkaError.PRODUCER_FENCED, True),
        (ck.KafkaError._FENCED, True),
        (ck.KafkaError.INVALID_PRODUCER_EPOCH, True),
        (ck.KafkaError._FATAL, True),
        (ck.KafkaError.INVALID_TXN_STATE, False),
        (ck.KafkaError.UNKNOWN_PRODUCER_ID, False),
    ],
)
def test_only_a_fence_counts_as_another_producer_taking_the_id(code: int, fence: bool) -> None:
    assert is_fence(ck.KafkaError(code, "from the broker", fatal=True)) is fence


def test_a_tracker_fenced_by_a_twin_stops_and_the_twin_carries_on(
    kafka: str, tmp_path: Path
) -> None:
    with World(kafka, tmp_path) as world:
        answer_compensations(world)
        first = world.start_tracker("twin")
        ids = [f"f{i}-{world.name}" for i in range(30)]
        for i, o in enumerate(ids[:15]):
            for event in script(i, o):
                world.publish(event)  # type: ignore[arg-type]
        world.wait(lambda: ids[0] in world.states(), timeout=60, what="the first tracker")
        world.start_tracker("twin")  # joins with the same static member id: fences the first
        assert first.wait(90) != 0, world.logs()
        for i, o in enumerate(ids[15:], start=15):  # only the twin is left to track these
            for event in script(i, o):
                world.publish(event)  # type: ignore[arg-type]
        check_outcomes(world, ids)
        first_log = (world.tmp / "tracker-twin-0.log").read_text()
        [line] = [x for x in first_log.splitlines() if x.startswith("choreo: ")]
        assert "instance twin" in line and "give each its own --instance" in line, line
        assert "a new producer takes over" not in first_log, "the fenced tracker fought back"
