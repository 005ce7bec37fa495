"""Hundreds of sagas while the tracker is SIGKILLed and restarted, and an instance taking over."""

from __future__ import annotations

import re
import signal
from pathlib import Path

import pytest
from conftest import World, answer_compensations
from saga_script import check_outcomes, script

from choreo._saga.state import TERMINAL

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


RESTORED = re.compile(
    r"restored (\d+) saga\(s\) of partition\(s\) \[([\d, ]*)\] in [\d.]+s: (\d+) record\(s\) read"
    r"(?:, partition\(s\) \[([\d, ]*)\] kept through the rebalance)?"
)


def _restores(log: Path) -> list[tuple[int, set[int], int, set[int]]]:
    """Each restore a tracker logged: (sagas held, partitions, records read, partitions kept)."""

    def numbers(text: str | None) -> set[int]:
        return {int(n) for n in (text or "").split(", ") if n}

    return [
        (int(m[1]), numbers(m[2]), int(m[3]), numbers(m[4]))
        for m in RESTORED.finditer(log.read_text())
    ]


def _finished(world: World, ids: list[str]) -> bool:
    states = world.states()
    return all(o in states and states[o].status in TERMINAL for o in ids)


def test_second_instance_takes_over_and_partitions_that_stay_are_not_read_again(
    kafka: str, tmp_path: Path
) -> None:
    """Every rebalance revokes all of a tracker's partitions (range, eager); those assigned
    back are kept, with only what was written since read, not the whole changelog."""
    with World(kafka, tmp_path, CHOREO_TEST_SAGA_SLOW="1") as world:
        answer_compensations(world)
        first = world.start_tracker("a")
        a_log, b_log = world.tmp / "tracker-a-0.log", world.tmp / "tracker-b-1.log"
        world.wait(lambda: "restored" in a_log.read_text(), what="a to own every partition")
        ids = [f"t{i}-{world.name}" for i in range(150)]
        for i, o in enumerate(ids[:20]):
            for event in script(i, o):
                world.publish(event)  # type: ignore[arg-type]
        world.wait(lambda: _finished(world, ids[:20]), timeout=60, what="a's first sagas to end")
        world.start_tracker("b")
        world.wait(
            lambda: "restored" in b_log.read_text() and len(_restores(a_log)) >= 2,
            what="both instances to own partitions",
        )
        [(_, everything, _, _), (held, mine, read, kept), *_] = _restores(a_log)
        assert kept == mine and mine < everything, _restores(a_log)
        # a's sagas kept: at most a last transaction whose marker was not yet written is read
        # again, where a full restore reads every record of every saga held (4-6 each).
        assert held > 0 and read < held, _restores(a_log)
        for i, o in enumerate(ids[20:75], start=20):
            for event in script(i, o):
                world.publish(event)  # type: ignore[arg-type]
        first.send_signal(signal.SIGKILL)
        first.wait()
        for i, o in enumerate(ids[75:], start=75):
            for event in script(i, o):
                world.publish(event)  # type: ignore[arg-type]
        assert check_outcomes(world, ids) == 0  # no deadline reaches past a restart
        [(_, b_first, _, _), (_, after_kill, read, kept), *_] = _restores(b_log)
        assert kept == b_first and after_kill == everything, _restores(b_log)
        assert read > 0, _restores(b_log)  # b read a's share
