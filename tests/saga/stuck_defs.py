"""The order saga, run by a tracker one of whose offsets calls and one of whose commits never
return.

A ``choreo saga run`` target: importing it makes the fifth transaction's
``send_offsets_to_transaction`` block for good (as librdkafka's does when the group coordinator
left the cluster, librdkafka #5456 / #5511), and the seventh commit too, after
their records were produced. The first is given up as hung, past its own timeout and a
request's (2 s + 2.9 s + 1 s); the second, a commit, is never judged hung (a commit given up
after the broker took it would repeat its batch) and is given up after ``STUCK_S`` (8 s).
"""

from __future__ import annotations

from commit_hook import hang, on_commit, on_send_offsets
from saga_defs import order_saga

from choreo._saga.tracker import SagaTracker
from choreo._transport import txn_calls

__all__ = ["order_saga"]

txn_calls.TRANSACTION_CALL_S = 2.0
txn_calls.HUNG_MARGIN_S = 1.0
txn_calls.STUCK_S = 8.0
assert SagaTracker.__init__.__kwdefaults__ is not None
SagaTracker.__init__.__kwdefaults__["transaction_timeout_ms"] = 3000  # requests: 2.9 s
on_send_offsets(hang(before=5))
on_commit(hang(before=7))
