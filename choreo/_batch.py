"""What a batch handler gets besides its list: ``Context`` plus a way to turn single items away.

A bulk load must not fail a thousand good rows because one is bad, nor
retry them for nothing: the handler loads the good ones and calls
``ctx.reject(item, error)`` for each bad one. After the handler returned,
the runtime dead-letters those records (reason ``rejected``, with the
error's type and message) and commits the batch as usual.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from choreo._context import Context
from choreo._transport.base import Record

REJECTED = "rejected"
"""The dead-letter reason of an item a batch handler rejected."""


class BatchContext(Context):
    """Per batch; ``record`` and the header properties are None (a batch has many)."""

    __slots__ = ("_records", "rejected")

    def __init__(self, service: str, items: Sequence[tuple[Record, Any]], attempt: int = 1) -> None:
        super().__init__(service, None, attempt)
        self._records = {id(item): (record, item) for record, item in items}
        self.rejected: list[tuple[Record, Exception]] = []
        """What ``reject`` collected; forgotten if the handler raises (a retry decides anew)."""

    def reject(self, item: Any, error: Exception) -> None:
        """Dead-letter ``item`` (an element of the handler's list) with ``error`` as the reason.

        Nothing is sent until the handler returns, so a handler that fails
        after rejecting leaves no dead letters behind for its retry to repeat.
        """
        found = self._records.get(id(item))
        if found is None or found[1] is not item:
            raise ValueError(f"reject() takes an element of this batch, got {item!r:.200}")
        self.rejected.append((found[0], error))
