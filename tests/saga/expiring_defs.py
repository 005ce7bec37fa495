"""The order saga, run by a tracker paused mid-commit until the broker expires its transaction.

A ``choreo saga run`` target: importing it makes the fifth transaction wait, after its records
were produced, until the broker has aborted it for outliving ``transaction.timeout.ms`` and
bumped the producer's epoch (the broker looks for such transactions every 10 s), as a process
stopped (SIGSTOP), starved or paused by its host would. Its commit then comes back fenced, as a
twin's would. The timeout is shortened to 2 s so the wait is 14 s, not 24.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable

from commit_hook import on_commit
from saga_defs import order_saga

from choreo._saga.tracker import SagaTracker

__all__ = ["order_saga"]

TRANSACTION_TIMEOUT_MS = 2000
PAUSE_S = 14.0
"""The timeout, then the broker's 10 s check, then a margin."""

assert SagaTracker.__init__.__kwdefaults__ is not None
SagaTracker.__init__.__kwdefaults__["transaction_timeout_ms"] = TRANSACTION_TIMEOUT_MS
_count = itertools.count(1)


def _pause_the_fifth(commit: Callable[[], None]) -> None:
    if next(_count) == 5:
        time.sleep(PAUSE_S)
    commit()


on_commit(_pause_the_fifth)
