"""When each saga in memory next needs the clock, so a tick looks only at what is due.

The tracker calls :meth:`Timers.set` with a saga's wake time whenever its committed state
changes (and for every state it restores), and :meth:`Timers.due` each tick.

A saga's wake time is held by the store, as 8 bytes in front of its packed state
(:data:`~choreo._saga.store.WAKE`); the timers only keep, per partition, a list of saga ids
per whole second of wake time (the id objects the store holds, not copies), and a heap of those
seconds. At 100,000 open sagas that is ~9 bytes a saga, where a heap entry, a float and a dict
entry of their own were ~105.

A saga stays listed at its earlier second when its wake time moves later, and is listed at its
new second when the earlier one comes (the store has its current time): a saga's wake time
mostly moves later (a step's deadline after the one before, the retention after the end), so
most commits list nothing. Listing each move left a stale entry behind, and the lists were
rebuilt from the whole store whenever those outnumbered the live ones: ~2 us a commit on the
bench. A time moved earlier is listed at once, and its old entry is skipped when its second
comes; the lists are still rebuilt when such entries outnumber the live ones.
"""

from __future__ import annotations

import heapq
import math

from choreo._saga.store import StateKey, StateStore, due_time

COMPACT_MIN = 1024
"""Below this many listed ids, stale ones are left to be skipped when their second comes."""
FAR = 2**62
"""The second listed for wake times beyond it (and infinity): never reached."""


def _second(at: float) -> int:
    return math.floor(at) if at < FAR else FAR


class Timers:
    """The wake times of the sagas ``store`` holds."""

    def __init__(self, store: StateStore) -> None:
        self._store = store
        self._lists: dict[int, dict[int, list[str]]] = {}
        """Per partition, per second: the sagas listed to wake in that second."""
        self._heap: list[tuple[int, int]] = []
        """(second, partition), one per list."""
        self._listed = 0
        self._limit = COMPACT_MIN
        """Past this many listed ids, the lists are rebuilt (twice the live ones, or more)."""

    def __len__(self) -> int:
        return self._store.armed

    def set(self, key: StateKey, at: float | None) -> None:
        """Wake the saga at ``at`` (None: forget it). A saga the store does not hold is
        ignored: its state is gone, and so is its wake time."""
        partition, saga_id = key
        at = due_time(at)
        try:
            was = self._store.set_wake(partition, saga_id, at)
        except KeyError:
            return
        self.moved(key, was, at)

    def moved(self, key: StateKey, was: float | None, at: float | None) -> None:
        """The store's wake time of a saga it holds went from ``was`` to ``at``
        (:meth:`StateStore.apply` sets a batch's at once): list it if no entry of it comes
        first."""
        if at is None or (was is not None and _second(was) <= _second(at)):
            return  # listed at was's second or earlier, and moved there when it comes
        partition, saga_id = key
        self._store.hold_under(partition, saga_id)  # the id object listed: not a copy
        self._list(partition, _second(at), saga_id)
        if self._listed > self._limit:
            # Past the limit set when the lists were last rebuilt: a rebuild only when stale
            # entries outnumber live ones, not because the sagas grew in number since.
            self._limit = max(COMPACT_MIN, 2 * len(self))
            if self._listed > self._limit:
                self._rebuild()

    def load(self, partition: int) -> None:
        """List the wake times of a partition the store was just given (restore sets them
        as it packs the states: one pass over the changelog, no parse)."""
        self.drop_partition(partition)
        lists: dict[int, list[str]] = {}
        for saga_id, at in self._store.wakes(partition):
            second = _second(at)
            ids = lists.get(second)
            if ids is None:
                lists[second] = [saga_id]
            else:
                ids.append(saga_id)
        self._lists[partition] = lists
        self._listed += sum(len(ids) for ids in lists.values())
        self._heap += [(second, partition) for second in lists]
        heapq.heapify(self._heap)
        self._limit = max(COMPACT_MIN, 2 * len(self))

    def drop_partition(self, partition: int) -> None:
        """The partition moved away: forget its lists."""
        lists = self._lists.pop(partition, None)
        if lists:
            self._listed -= sum(len(ids) for ids in lists.values())
            self._heap = [entry for entry in self._heap if entry[1] != partition]
            heapq.heapify(self._heap)

    def due(self, now: float) -> list[StateKey]:
        """The sagas whose wake time is ``now`` or earlier, each once: they are forgotten until
        :meth:`set` tracks them again (after the commit; when the transaction aborts, the
        tracker sets them again from the store)."""
        found: list[StateKey] = []
        heap, store = self._heap, self._store
        limit = _second(now)
        later: list[tuple[int, int]] = []
        while heap and heap[0][0] <= limit:
            second, partition = heapq.heappop(heap)
            lists = self._lists[partition]
            ids = lists[second]
            kept: list[str] = []
            for saga_id in ids:
                at = store.wake(partition, saga_id)
                if at is None:
                    continue  # forgotten since it was listed
                if at <= now:
                    store.set_wake(partition, saga_id, None)
                    found.append((partition, saga_id))
                elif (wakes := _second(at)) > second:
                    self._list(partition, wakes, saga_id)  # moved later since it was listed
                else:
                    kept.append(saga_id)  # later in the current second
            self._listed -= len(ids) - len(kept)
            if kept:
                lists[second] = kept
                later.append((second, partition))
            else:
                del lists[second]
        for entry in later:
            heapq.heappush(heap, entry)
        return found

    def _list(self, partition: int, second: int, saga_id: str) -> None:
        lists = self._lists.get(partition)
        if lists is None:
            lists = self._lists[partition] = {}
        ids = lists.get(second)
        if ids is None:
            ids = lists[second] = []
            heapq.heappush(self._heap, (second, partition))
        ids.append(saga_id)
        self._listed += 1

    def _rebuild(self) -> None:
        """Drop the stale entries: list each partition's current wake times afresh."""
        for partition in list(self._lists):
            self.load(partition)
