"""The order saga, run by a tracker whose transactions abort now and then (seeded).

A ``choreo saga run`` target: importing it makes one commit in four fail after the
transaction's records were produced, as a broker refusing the commit would, and only after a
pause in which the tracker decides its next batch on top of the failing one. The aborted
records are real ones in the real broker's log; ``read_committed`` readers must never see them,
and the tracker must read both batches again.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable

import confluent_kafka as ck
from commit_hook import on_commit
from saga_defs import order_saga

__all__ = ["order_saga"]

_dice = random.Random(20261204)


def _refuse_some(commit: Callable[[], None]) -> None:
    if _dice.random() < 0.25:
        time.sleep(0.3)  # the loop decides the next batch meanwhile
        error = ck.KafkaError(
            ck.KafkaError._STATE, "injected: commit refused", txn_requires_abort=True
        )
        raise ck.KafkaException(error)
    commit()


on_commit(_refuse_some)
