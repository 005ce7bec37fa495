"""The order saga, run by a tracker whose third commit reaches the broker, which takes it, and
never returns.

A ``choreo saga run`` target. The commit is given up after ``STUCK_S`` (8 s) and a new producer
takes over; reading its batch again would handle it twice (each compensation in it sent again).
"""

from __future__ import annotations

from commit_hook import hang, on_commit
from saga_defs import order_saga

from choreo._transport import txn_calls

__all__ = ["order_saga"]

txn_calls.STUCK_S = 8.0
on_commit(hang(after=3))
