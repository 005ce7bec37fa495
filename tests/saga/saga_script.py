"""Hundreds of sagas of three kinds and the outcome each must reach, whatever is killed.

Shared by the tracker crash tests (``test_crash.py``) and the broker failover test
(``tests/cluster/test_cluster_saga.py``): a tracker SIGKILLed and a broker SIGKILLed are
held to the same expectations.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import saga_defs as d

from choreo import _headers

if TYPE_CHECKING:
    from conftest import World

EXPECTED = {
    0: ("completed", []),
    1: ("compensated", ["CancelOrder"]),
    2: ("compensated", ["ReleaseStock", "CancelOrder"]),
}


def script(i: int, o: str) -> list[object]:
    if i % 3 == 0:
        return [d.placed(o), d.reserved(o), d.authorized(o), d.completed(o)]
    if i % 3 == 1:
        return [d.placed(o), d.reservation_failed(o)]
    return [d.placed(o), d.reserved(o), d.declined(o)]


def check_outcomes(world: World, ids: list[str], timeout_s: float = 90) -> int:
    """Every saga reached its status with its compensations, each once and in order;
    returns how many records re-sent a compensation (the same ``ce_id`` again: the tracker's
    re-send after a compensation deadline, dropped by an idempotent service).

    A compensation emitted twice under two ``ce_id``s is a double effect and fails here.
    """

    def all_terminal() -> bool:
        states = world.states()
        return all(
            o in states and states[o].status.value == EXPECTED[i % 3][0] for i, o in enumerate(ids)
        )

    world.wait(all_terminal, timeout=timeout_s, what="every saga to finish")
    time.sleep(1.0)  # let any stray duplicate surface before counting
    resent = 0
    wrong: dict[str, list[tuple[str, str]]] = {}
    for i, o in enumerate(ids):
        emitted = [
            (type(s.event).__name__, s.headers[_headers.ID]) for s in list(world.emitted.get(o, []))
        ]
        first = list(dict.fromkeys(emitted))  # each ce_id once, in the order first seen
        resent += len(emitted) - len(first)
        # In order: a decline read before the reservation it follows (another topic) waits for it.
        if [kind for kind, _ in first] != EXPECTED[i % 3][1]:
            wrong[o] = emitted
    sample = dict(list(wrong.items())[:5])
    assert wrong == {}, f"{len(wrong)} sagas with missing or doubled compensations: {sample}"
    return resent
