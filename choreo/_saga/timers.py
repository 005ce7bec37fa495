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
    """Held per partition and saga id, not per (partition, saga id) tuple: with 100,000 open
    sagas a key tuple each is ~5 MB of the tracker's memory."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, str]] = []
        self._at: dict[int, dict[str, float]] = {}
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def set(self, key: StateKey, at: float | None) -> None:
        """Wake the saga at ``at`` (None: forget it)."""
        partition, saga_id = key
        times = self._at.get(partition)
        if at is None:
            if times is not None and times.pop(saga_id, None) is not None:
                self._count -= 1
            return
        if times is None:
            times = self._at[partition] = {}
        was = times.get(saga_id)
        if was == at:
            return
        self._count += was is None
        times[saga_id] = at
        heapq.heappush(self._heap, (at, partition, saga_id))
        if len(self._heap) > max(COMPACT_MIN, 2 * self._count):
            self._heap = [(when, p, s) for p, held in self._at.items() for s, when in held.items()]
            heapq.heapify(self._heap)

    def drop_partition(self, partition: int) -> None:
        """The partition moved away: its heap entries become stale."""
        self._count -= len(self._at.pop(partition, {}))

    def due(self, now: float) -> list[StateKey]:
        """The sagas whose wake time is ``now`` or earlier, each once: they are forgotten until
        :meth:`set` tracks them again (after the commit; when the transaction aborts, the
        tracker sets them again from the store)."""
        found: list[StateKey] = []
        heap = self._heap
        while heap and heap[0][0] <= now:
            at, partition, saga_id = heapq.heappop(heap)
            times = self._at.get(partition)
            if times is not None and times.get(saga_id) == at:
                found.append((partition, saga_id))
                del times[saga_id]
                self._count -= 1
        return found
