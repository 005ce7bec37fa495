"""The order saga, run by a tracker one of whose commits never returns.

A ``choreo saga run`` target: importing it makes the fifth transaction's commit block for good
(as librdkafka's ``send_offsets_to_transaction`` does when the group coordinator left the
cluster, librdkafka #5456 / #5511), after its records were produced, and shortens a
transactional call's timeout to 2 s and the margin past it after which the call counts as hung
to 1 s (``STUCK_S`` stays a minute).
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable

from commit_hook import on_commit
from saga_defs import order_saga

from choreo._transport import txn_calls

__all__ = ["order_saga"]

txn_calls.TRANSACTION_CALL_S = 2.0
txn_calls.HUNG_MARGIN_S = 1.0
_count = itertools.count(1)
_never = threading.Event()


def _hang_the_fifth(commit: Callable[[], None]) -> None:
    if next(_count) == 5:
        _never.wait()
    commit()


on_commit(_hang_the_fifth)
