"""The order saga, run by a tracker whose transactions abort now and then (seeded).

A ``choreo saga run`` target: importing it makes one commit in four fail after the
transaction's records were produced, as a broker refusing the commit would, and only after a
pause in which the tracker decides its next batch on top of the failing one. The aborted
records are real ones in the real broker's log; ``read_committed`` readers must never see them,
and the tracker must read both batches again. A hook, not a fake: every other call goes to
the real producer.
"""

from __future__ import annotations

import random
import time
from typing import Any

import confluent_kafka as ck
from saga_defs import order_saga

from choreo._saga.tracker import SagaTracker

__all__ = ["order_saga"]

_dice = random.Random(20261204)
_transact = SagaTracker._transact


class _Refusing:
    """The real producer, except that some commits are refused."""

    def __init__(self, producer: ck.Producer) -> None:
        self._producer = producer

    def __getattr__(self, name: str) -> Any:
        return getattr(self._producer, name)

    def commit_transaction(self, *args: Any) -> None:
        if _dice.random() < 0.25:
            time.sleep(0.3)  # the loop decides the next batch meanwhile
            error = ck.KafkaError(
                ck.KafkaError._STATE, "injected: commit refused", txn_requires_abort=True
            )
            raise ck.KafkaException(error)
        self._producer.commit_transaction(*args)


def _refusing(self: SagaTracker, producer: ck.Producer, *args: Any) -> None:
    _transact(self, _Refusing(producer), *args)  # type: ignore[arg-type]


SagaTracker._transact = _refusing  # type: ignore[method-assign]
