"""Hundreds of sagas while the tracker is SIGKILLed and restarted, and an instance taking over."""

from __future__ import annotations

import re
import signal
from pathlib import Path

import pytest
from conftest import World, answer_compensations
from saga_script import check_outcomes, script

pytestmark = pytest.mark.stack


def test_sigkill_twice_loses_and_repeats_nothing(kafka: str, tmp_path: Path) -> None:
    with World(kafka, tmp_path, CHOREO_TEST_SAGA_SLOW="1") as world:
        answer_compensations(world)
        tracker = world.start_tracker("a")
        ids = [f"k{i}-{world.name}" for i in range(600)]
        for i, o in enumerate(ids):
            for event in script(i, o):
                world.publish(event)  # type: ignore[arg-type]
            if i in (200, 400):
                # Killed with live state: a slow start on a busy machine must not make it moot.
                world.wait(lambda o=o: o in world.states(), timeout=60, what=f"saga {o}")
                tracker.send_signal(signal.SIGKILL)
                tracker.wait()
                tracker = world.start_tracker("a")
        assert check_outcomes(world, ids) == 0  # no deadline reaches past a restart
        restores = re.findall(r"restored (\d+) saga", world.logs())
        assert any(int(n) > 0 for n in restores), restores  # a restart picked up live state


def test_second_instance_takes_over(kafka: str, tmp_path: Path) -> None:
    with World(kafka, tmp_path, CHOREO_TEST_SAGA_SLOW="1") as world:
        answer_compensations(world)
        first = world.start_tracker("a")
        world.start_tracker("b")
        a_log, b_log = world.tmp / "tracker-a-0.log", world.tmp / "tracker-b-1.log"
        world.wait(
            lambda: "restored" in a_log.read_text() and "restored" in b_log.read_text(),
            what="both instances to own partitions",
        )
        ids = [f"t{i}-{world.name}" for i in range(150)]
        for i, o in enumerate(ids[:75]):
            for event in script(i, o):
                world.publish(event)  # type: ignore[arg-type]
        first.send_signal(signal.SIGKILL)
        first.wait()
        for i, o in enumerate(ids[75:], start=75):
            for event in script(i, o):
                world.publish(event)  # type: ignore[arg-type]
        assert check_outcomes(world, ids) == 0  # no deadline reaches past a restart
        assert "restored" in b_log.read_text().split("restored", 1)[1]  # b restored a's share
