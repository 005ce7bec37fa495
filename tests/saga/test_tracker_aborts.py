"""Transactions that abort, or never finish, while the next batch is decided on top of them.

The tracker commits a batch in the background while it decides the next one; when that
commit fails, the next batch was built on states that never became real. Both must be read
again from the committed state: every saga still ends as it should, each compensation is
emitted once (under one ``ce_id``), and nothing of an aborted transaction is ever read.
"""

from __future__ import annotations

import json
import time
from collections import defaultdict
from itertools import pairwise
from pathlib import Path

import pytest
from conftest import World, answer_compensations
from saga_script import check_outcomes, script

from choreo._saga.store import changelog_topic, read_changelog_bytes

pytestmark = pytest.mark.stack


def run_sagas(world: World, target: str, count: int) -> list[str]:
    """Start a tracker on ``target`` and publish ``count`` sagas' events, paced so batches are
    small and each reads a few partitions (the next one reads others)."""
    answer_compensations(world)
    world.start_tracker("a", target=target)
    ids = [f"s{i}-{world.name}" for i in range(count)]
    for i, o in enumerate(ids):
        for event in script(i, o):
            world.publish(event)  # type: ignore[arg-type]
        if i == 0:
            world.wait(lambda: ids[0] in world.states(), timeout=60, what="the tracker")
        time.sleep(0.02)
    return ids


def test_aborted_commits_lose_and_repeat_nothing(kafka: str, tmp_path: Path) -> None:
    with World(kafka, tmp_path) as world:
        ids = run_sagas(world, "aborting_defs:order_saga", 120)
        assert check_outcomes(world, ids) == 0
        aborted = world.logs().count("transaction aborted, re-reading the batch")
        assert aborted >= 3, world.logs()[-3000:]  # the hook did refuse commits mid-stream


def test_an_offsets_call_and_a_commit_that_never_return_are_given_up_and_nothing_is_lost(
    kafka: str, tmp_path: Path
) -> None:
    with World(kafka, tmp_path) as world:
        ids = run_sagas(world, "stuck_defs:order_saga", 60)
        assert check_outcomes(world, ids) == 0
        logs = world.logs()
        assert "send offsets outlived its own timeout and a request's (librdkafka #5456)" in logs
        assert "transaction commit unfinished after 8s; a new producer takes over" in logs
        assert "commit outlived" not in logs  # a commit is never judged hung
        assert "the transaction given up had committed" not in logs


def test_a_commit_the_broker_took_whose_call_never_returns_is_kept_not_read_again(
    kafka: str, tmp_path: Path
) -> None:
    """The commit call is given up after ``STUCK_S``, not knowing whether the broker took it:
    read again, its batch was handled twice (7 compensations sent twice in one run)."""
    with World(kafka, tmp_path) as world:
        ids = run_sagas(world, "taken_defs:order_saga", 60)
        assert check_outcomes(world, ids) == 0
        logs = world.logs()
        assert "transaction commit unfinished after 8s; a new producer takes over" in logs
        assert "the transaction given up had committed" in logs, logs[-3000:]
        assert redecided(world) == []


def redecided(world: World) -> list[str]:
    """The sagas whose changelog holds one decision twice in a row (apart from its times): an
    input batch handled twice, such as a transaction given up after the broker took it and
    then read again."""
    decisions: dict[str, list[object]] = defaultdict(list)

    def note(data: bytes) -> bytes:
        state = json.loads(data)
        decisions[state["saga_id"]].append(_timeless(state))
        return data

    read_changelog_bytes({"bootstrap.servers": world.kafka}, changelog_topic(world.name), keep=note)
    return [saga for saga, made in decisions.items() if any(a == b for a, b in pairwise(made))]


def _timeless(value: object) -> object:
    if isinstance(value, float):
        return 0.0
    if isinstance(value, dict):
        return {key: _timeless(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_timeless(item) for item in value]
    return value


def test_a_transaction_the_broker_expired_is_renewed_not_taken_for_a_twin(
    kafka: str, tmp_path: Path
) -> None:
    """The broker expiring a paused tracker's transaction fences its producer exactly as a
    twin's ``init_transactions`` would; a twin stops the tracker (``test_tracker_fence``), an
    expiry must not: the tracker takes a new producer and reads the batch again."""
    with World(kafka, tmp_path) as world:
        ids = run_sagas(world, "expiring_defs:order_saga", 60)
        assert check_outcomes(world, ids) == 0
        logs = world.logs()
        assert "its transaction expired, open past transaction.timeout.ms" in logs, logs[-3000:]
        assert "another tracker runs with the same instance id" not in logs, logs[-3000:]
