"""The order saga, run by a tracker one of whose commits never returns.

A ``choreo saga run`` target: importing it makes the fifth transaction's commit block for good
(as librdkafka's ``send_offsets_to_transaction`` does when the group coordinator left the
cluster, librdkafka #5456 / #5511), after its records were produced, and shortens the wait
before the tracker gives such a transaction up to 5 s.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable

from commit_hook import on_commit
from saga_defs import order_saga

from choreo._saga import tracker

__all__ = ["order_saga"]

tracker.STUCK_S = 5.0
_count = itertools.count(1)
_never = threading.Event()


def _hang_the_fifth(commit: Callable[[], None]) -> None:
    if next(_count) == 5:
        _never.wait()
    commit()


on_commit(_hang_the_fifth)
