"""When each saga in memory next needs the clock: a heap, so a tick looks only at what is due.

The tracker calls :meth:`Timers.set` with a saga's wake time whenever its committed state
changes (and for every state it restores), and :meth:`Timers.due` each tick. Old heap entries
are not removed when a saga's wake time changes; they are skipped when popped (the map holds
the current time), and the heap is rebuilt from the map when stale entries outnumber live ones.
"""

from __future__ import annotations

import heapq

from choreo._saga.store import StateKey

COMPACT_MIN = 1024
"""Below this many heap entries, stale ones are left to be skipped when popped."""


class Timers:
    def __init__(self) -> None:
        self._heap: list[tuple[float, StateKey]] = []
        self._at: dict[StateKey, float] = {}

    def __len__(self) -> int:
        return len(self._at)

    def set(self, key: StateKey, at: float | None) -> None:
        """Wake the saga at ``at`` (None: forget it)."""
        if at is None:
            self._at.pop(key, None)
            return
        if self._at.get(key) == at:
            return
        self._at[key] = at
        heapq.heappush(self._heap, (at, key))
        if len(self._heap) > max(COMPACT_MIN, 2 * len(self._at)):
            self._heap = [(when, k) for k, when in self._at.items()]
            heapq.heapify(self._heap)

    def drop_partition(self, partition: int) -> None:
        """The partition moved away: its heap entries become stale."""
        for key in [k for k in self._at if k[0] == partition]:
            del self._at[key]

    def due(self, now: float) -> list[StateKey]:
        """The sagas whose wake time is ``now`` or earlier, each once: they are forgotten until
        :meth:`set` tracks them again (after the commit; when the transaction aborts, the
        tracker sets them again from the store)."""
        found: list[StateKey] = []
        heap = self._heap
        while heap and heap[0][0] <= now:
            at, key = heapq.heappop(heap)
            if self._at.get(key) == at:
                found.append(key)
                del self._at[key]
        return found
