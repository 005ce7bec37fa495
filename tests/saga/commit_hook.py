"""A hook on the saga tracker's commits, for ``choreo saga run`` targets that fail them.

``on_commit(decide)`` routes every ``commit_transaction`` of the tracker through
``decide(commit)``, after the transaction's records were produced: ``decide`` may call
``commit``, raise as a refusing broker would, or never return. ``on_send_offsets(decide)``
does the same with ``send_offsets_to_transaction``. A hook, not a fake: every other
call goes to the real producer and broker.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Iterator
from typing import Any

import confluent_kafka as ck

from choreo._saga.tracker import SagaTracker

Decide = Callable[[Callable[[], None]], None]
_decide: dict[str, Decide] = {}
"""The hooked producer calls, by name."""


class _Hooked:
    """The real producer, whose hooked calls go through the test's ``decide``."""

    def __init__(self, producer: ck.Producer):
        self._producer = producer

    def __getattr__(self, name: str) -> Any:
        call = getattr(self._producer, name)
        decide = _decide.get(name)
        if decide is None:
            return call
        return lambda *args: decide(lambda: call(*args))


def on_commit(decide: Decide) -> None:
    _hook("commit_transaction", decide)


def on_send_offsets(decide: Decide) -> None:
    _hook("send_offsets_to_transaction", decide)


def _hook(name: str, decide: Decide) -> None:
    if not _decide:
        transact = SagaTracker._transact

        def hooked(self: SagaTracker, producer: ck.Producer, *args: Any) -> Any:
            return transact(self, _Hooked(producer), *args)  # type: ignore[arg-type]

        SagaTracker._transact = hooked  # type: ignore[method-assign]
    _decide[name] = decide


_never = threading.Event()


def hang(before: int = 0, after: int = 0) -> Decide:
    """A ``decide`` that never returns from the call numbered ``before`` (never made) and the
    one numbered ``after`` (made: the broker took it)."""
    count: Iterator[int] = itertools.count(1)

    def decide(call: Callable[[], None]) -> None:
        nth = next(count)
        if nth == before:
            _never.wait()
        call()
        if nth == after:
            _never.wait()

    return decide
