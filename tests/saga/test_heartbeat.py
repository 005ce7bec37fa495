"""A step's heartbeat on the real broker, through a kill -9 of the tracker.

Two sagas wait on a reservation whose warehouse sent one progress event. The tracker is killed,
and while it is down (longer than the heartbeat) one warehouse sends another progress event.
After the restart the heartbeat is still armed (it lives in the changelog) and fires for the
silent saga; the other's progress, already in Kafka, is read before any timer acts (the
deadline gate), so it re-arms that saga's heartbeat instead of arriving after a timeout.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest
import saga_defs as d
from conftest import World, answer_compensations, oid

pytestmark = pytest.mark.stack


def test_heartbeats_survive_a_kill_and_wait_for_progress_already_written(
    kafka: str, tmp_path: Path
) -> None:
    with World(kafka, tmp_path) as world:
        answer_compensations(world)
        tracker = world.start_tracker(target="saga_defs:heartbeat_saga")
        talking, silent = oid("talking"), oid("silent")
        for o in (talking, silent):
            world.publish(d.placed(o))
            world.publish(d.progress(o))

        def progressed(o: str) -> bool:
            state = world.states().get(o)
            return state is not None and state.steps["reserve-stock"].progress == 1

        for o in (silent, talking):  # committed before it dies; talking's last, kill at once
            world.wait(lambda o=o: progressed(o), timeout=60, what=f"the first progress of {o}")
        tracker.send_signal(signal.SIGKILL)
        tracker.wait()
        world.publish(d.progress(talking))
        time.sleep(d.HEARTBEAT.total_seconds() + 1)  # both heartbeats run out while it is down
        world.start_tracker(target="saga_defs:heartbeat_saga")
        states = {o: world.wait_status(o, "compensated", timeout=60) for o in (talking, silent)}
        assert {o: s.steps["reserve-stock"].progress for o, s in states.items()} == {
            talking: 2,  # read before the timer acted, so it counted (and re-armed it)
            silent: 1,
        }
        for o, state in states.items():
            assert state.steps["reserve-stock"].status.value == "timed-out"
            assert "no progress within its heartbeat" in str(state.reason)
            assert world.commands(o) == ["CancelOrder"]
