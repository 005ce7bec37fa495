"""Three instances under a steady load through a seeded sequence of kill -9, SIGTERM, restart
and join: partitions that keep their owner never stall, moved ones resume within the
failover time, every record is handled, in per-key order, twice only after a kill -9.

The printed table is the measurement quoted in README "Scaling out"; the same run measures
another setup through the inherited environment (``CHOREO_TRANSPORT=aiokafka``,
``CHOREO_EXACTLY_ONCE=true``, ``CHOREO_STATIC_MEMBERSHIP=true``, ``CHOREO_SCALE_SEED=n``).
"""

from __future__ import annotations

import os
import random
import time
from collections import Counter
from pathlib import Path

import pytest
from scale_kit import (
    Instances,
    Load,
    create_topic,
    describe,
    order_violations,
    pauses,
    read_ledgers,
)

from choreo._schemas import Catalog

pytestmark = pytest.mark.stack

PARTITIONS = 6
RATE = 120.0
SESSION_TIMEOUT_S = float(os.environ.get("CHOREO_SESSION_TIMEOUT_S", "10"))
STALL_BOUND_S = SESSION_TIMEOUT_S + 3.0
"""Longest pause of a partition whose owner did not change. Alone, a change costs such a
partition under a second; a kill -9 soon after a restart paused them 9.1 s once in CI (the
rebalance that settles the restart waits out the dead member's session). The bound is one
session timeout plus start-up slack: the old eager group stalled every partition for 45 s
and more (54 s, 86-90 s), which this still fails."""
FAILOVER_BOUND_S = SESSION_TIMEOUT_S + 15.0
"""Documented failover: the session timeout, then a rebalance and a process start."""


def _wait(check: object, what: str, timeout_s: float, instances: Instances) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"timed out waiting for {what}\n{instances.logs()}"
        time.sleep(0.2)


def test_membership_changes_under_load_move_only_the_partitions_that_change_owner(
    kafka: str, isolated_schemas: Path, tmp_path: Path
) -> None:
    seed = int(os.environ.get("CHOREO_SCALE_SEED", random.randrange(2**32)))
    print(f"seed {seed} (CHOREO_SCALE_SEED={seed} repeats this sequence)")
    rng = random.Random(seed)
    catalog = Catalog.load(isolated_schemas)
    load = Load(kafka, catalog, RATE)
    create_topic(kafka, load.topic, PARTITIONS)
    ledgers = tmp_path / "ledgers"
    ledgers.mkdir()
    static = os.environ.get("CHOREO_STATIC_MEMBERSHIP", "").lower() == "true"
    instances = Instances(kafka, isolated_schemas, ledgers, {}, static=static)
    load.start()
    try:
        for slot in range(3):
            instances.start(slot)

        def all_flowing() -> bool:
            return len({h.pid for h in read_ledgers(ledgers)}) == 3

        _wait(all_flowing, "three instances handling records", 90, instances)
        time.sleep(5)
        actions: list[tuple[str, float]] = []
        next_slot = 3
        for kind in [*rng.sample(["kill -9", "SIGTERM", "restart"], 3), "join"]:
            if kind == "join":
                instances.start(next_slot)
                next_slot += 1
            else:
                slot = rng.choice(sorted(instances.live))
                if kind == "SIGTERM":
                    instances.sigterm(slot)
                else:
                    instances.kill(slot)
                    if kind == "restart":
                        instances.start(slot)
            actions.append((kind, time.time()))
            time.sleep(rng.uniform(8.0, 12.0))
        time.sleep(FAILOVER_BOUND_S)
        load.finish()

        def all_handled() -> bool:
            return {h.order_id for h in read_ledgers(ledgers)} >= set(load.sent)

        _wait(all_handled, "every record handled", 60, instances)
    finally:
        load.finish()
        instances.stop_all()

    handlings = read_ledgers(ledgers)
    found = pauses(handlings, actions[0][1] - 5, float("inf"))  # a stall may outlast the load
    print(f"{'change':<10}{'moved partitions':>20}{'other partitions':>20}")
    for kind, at in actions:
        moved, kept = describe(found, at, 8.0)
        print(f"{kind:<10}{moved:>19.1f}s{kept:>19.1f}s")
    stalls = [p for p in found if not p.moved and p.seconds > STALL_BOUND_S]
    assert not stalls, f"partitions stalled without moving: {stalls}\n{instances.logs()}"
    slow = [p for p in found if p.seconds > FAILOVER_BOUND_S]
    assert not slow, f"partitions resumed after the failover time: {slow}\n{instances.logs()}"
    assert not order_violations(handlings)
    handled = Counter(h.order_id for h in handlings)
    first_by = {h.order_id: h.pid for h in reversed(handlings)}
    twice = [o for o, n in handled.items() if n > 1 and first_by[o] not in instances.killed]
    assert not twice, f"handled twice without a kill -9: {twice[:10]} (of {len(twice)})"
    print(f"{len(load.sent)} records, {sum(handled.values()) - len(handled)} handled again")
