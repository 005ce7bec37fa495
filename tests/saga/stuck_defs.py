"""The order saga, run by a tracker one of whose commits never returns.

A ``choreo saga run`` target: importing it makes the fifth transaction's commit block for good
(as librdkafka's ``send_offsets_to_transaction`` does when the group coordinator left the
cluster, librdkafka #5456 / #5511), after its records were produced, and shortens the wait
before the tracker gives such a transaction up to 5 s. Every other call goes to the real
producer and broker.
"""

from __future__ import annotations

import threading
from typing import Any

import confluent_kafka as ck
from saga_defs import order_saga

from choreo._saga import tracker
from choreo._saga.tracker import SagaTracker

__all__ = ["order_saga"]

tracker.STUCK_S = 5.0
_commits = 0
_never = threading.Event()
_transact = SagaTracker._transact


class _Hanging:
    """The real producer, except that one commit never returns."""

    def __init__(self, producer: ck.Producer) -> None:
        self._producer = producer

    def __getattr__(self, name: str) -> Any:
        return getattr(self._producer, name)

    def commit_transaction(self, *args: Any) -> None:
        global _commits
        _commits += 1
        if _commits == 5:
            _never.wait()
        self._producer.commit_transaction(*args)


def _hanging(self: SagaTracker, producer: ck.Producer, *args: Any) -> Any:
    return _transact(self, _Hanging(producer), *args)  # type: ignore[arg-type]


SagaTracker._transact = _hanging  # type: ignore[method-assign]
