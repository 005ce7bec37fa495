"""Which offset of a partition is safe to commit.

A record is finished when its handler succeeded (or it was dead-lettered)
*and* everything it produced was acknowledged. Deliveries are not awaited one
by one on the hot path; instead each finished record keeps its delivery
futures here, and the commit point only moves past records whose futures all
resolved. Records finish in offset order (a partition is handled in order), so
a deque suffices.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Sequence

from choreo._errors import TransportError
from choreo._runtime.dead_letters import DeadLetterRefused


class Progress:
    __slots__ = ("_pending", "next_offset")

    def __init__(self) -> None:
        self._pending: deque[tuple[int, Sequence[asyncio.Future[None]]]] = deque()
        self.next_offset: int | None = None
        """The offset to commit: everything before it is finished."""

    def finish(self, offset: int, deliveries: Sequence[asyncio.Future[None]] = ()) -> None:
        if deliveries or self._pending:
            self._pending.append((offset, deliveries))
        else:
            self.next_offset = offset + 1

    def commit_point(self) -> int | None:
        """Advance past finished records whose deliveries resolved; raise if one failed.

        A failed delivery means an emitted event or dead letter is not in
        Kafka; committing past its record would lose it, so the service must
        stop and let the record be consumed again.
        """
        pending = self._pending
        while pending:
            offset, deliveries = pending[0]
            for delivery in deliveries:
                if not delivery.done():
                    return self.next_offset
                if delivery.cancelled() or delivery.exception() is not None:
                    cause = None if delivery.cancelled() else delivery.exception()
                    if isinstance(cause, DeadLetterRefused):
                        raise cause  # the runner stops this partition only
                    raise TransportError(f"delivery for offset {offset} failed: {cause}") from cause
            self.next_offset = offset + 1
            pending.popleft()
        return self.next_offset

    @property
    def idle(self) -> bool:
        """Nothing finished is waiting for deliveries (after ``commit_point``)."""
        return not self._pending

    def abandon(self, offset: int) -> None:
        """Forget ``offset`` and everything after it: never started, to be read again."""
        while self._pending and self._pending[-1][0] >= offset:
            self._pending.pop()

    async def settle(self) -> None:
        """Wait for every outstanding delivery (shutdown, revocation)."""
        for _, deliveries in list(self._pending):
            if deliveries:
                await asyncio.wait(deliveries)
