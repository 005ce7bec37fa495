"""A hook on the saga tracker's commits, for ``choreo saga run`` targets that fail them.

``on_commit(decide)`` routes every ``commit_transaction`` of the tracker through
``decide(commit)``, after the transaction's records were produced: ``decide`` may call
``commit``, raise as a refusing broker would, or never return. A hook, not a fake: every other
call goes to the real producer and broker.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import confluent_kafka as ck

from choreo._saga.tracker import SagaTracker


class _Hooked:
    """The real producer, whose commits go through the test's ``decide``."""

    def __init__(self, producer: ck.Producer, decide: Callable[[Callable[[], None]], None]):
        self._producer = producer
        self._decide = decide

    def __getattr__(self, name: str) -> Any:
        return getattr(self._producer, name)

    def commit_transaction(self, *args: Any) -> None:
        self._decide(lambda: self._producer.commit_transaction(*args))


def on_commit(decide: Callable[[Callable[[], None]], None]) -> None:
    transact = SagaTracker._transact

    def hooked(self: SagaTracker, producer: ck.Producer, *args: Any) -> Any:
        return transact(self, _Hooked(producer, decide), *args)  # type: ignore[arg-type]

    SagaTracker._transact = hooked  # type: ignore[method-assign]
