"""The tracker's timers against a plain dict of wake times: any sequence of sets, forgets,
moved times (also within one second, earlier and later), committed changes with and without a
new wake time, deletions, dropped and restored partitions and ticks pops exactly the sagas a
dict says are due, each once, and counts what it holds. The lists are rebuilt past 4 entries
here (1,024 in the tracker), so the examples rebuild them often. The wake times live in the
store, in front of each packed state."""

from __future__ import annotations

import math
from unittest.mock import patch

from hypothesis import given, settings
from hypothesis import strategies as st

from choreo._saga import timers as timers_module
from choreo._saga.store import StateKey, StateStore
from choreo._saga.timers import Timers

STATE = b'{"saga_id":"x"}'
keys = st.tuples(st.integers(0, 1), st.sampled_from(["a", "b", "c"]))
"""Few sagas, so their wake times move often and stale entries pile up."""
times = st.integers(0, 400).map(lambda quarter: quarter / 4)
"""Quarter seconds: several wake times share a second, and ticks fall inside one."""
operations = st.lists(
    st.one_of(
        st.tuples(st.just("set"), keys, st.none() | times),
        st.tuples(st.just("set"), keys, times),
        st.tuples(st.just("commit"), keys, st.booleans()),
        st.tuples(st.just("commit at"), keys, st.none() | times | st.just(math.nan)),
        st.tuples(st.just("drop"), st.integers(0, 1), st.none()),
        st.tuples(st.just("restore"), st.integers(0, 1), times),
        st.tuples(st.just("due"), st.none(), times),
    ),
    min_size=40,
    max_size=200,
)


@settings(max_examples=100, derandomize=True, deadline=None)
@given(operations)
def test_timers_pop_what_a_dict_says_is_due(ops: list[tuple[str, object, object]]) -> None:
    with patch.object(timers_module, "COMPACT_MIN", 4):
        _check(ops)


def _check(ops: list[tuple[str, object, object]]) -> None:
    store = StateStore()
    timers = Timers(store)
    held: set[StateKey] = set()
    model: dict[StateKey, float] = {}
    owned = {0, 1}
    for partition in owned:
        store.load(partition, {})
    for op, key, value in ops:
        if op == "set":
            assert isinstance(key, tuple)
            timers.set(key, value if isinstance(value, float) else None)
            if key not in held or value is None:
                model.pop(key, None)  # a saga the store does not hold has no timer
            else:
                assert isinstance(value, float)
                model[key] = value
        elif op == "commit":  # a changed state keeps its wake time; a deleted one loses it
            assert isinstance(key, tuple)
            store.apply({key: STATE if value else None})
            if value and key[0] in owned:
                held.add(key)
            else:
                held.discard(key)
                model.pop(key, None)
        elif op == "commit at":  # a committed state with its new wake time (None, NaN: none)
            assert isinstance(key, tuple)
            at = value if isinstance(value, float) else None
            for moved in store.apply({key: STATE}, wakes={key: at}):
                timers.moved(*moved)
            if key[0] in owned:
                held.add(key)
                if at is None or math.isnan(at):
                    model.pop(key, None)
                else:
                    model[key] = at
        elif op == "drop":
            assert isinstance(key, int)
            store.drop(key)
            timers.drop_partition(key)
            owned.discard(key)
            held = {k for k in held if k[0] != key}
            model = {k: at for k, at in model.items() if k[0] != key}
        elif op == "restore":  # the partition comes back: every saga of it woken at `value`
            assert isinstance(key, int) and isinstance(value, float)
            ids = ["a", "b"]
            store.load(key, {saga_id: store.pack(STATE, value) for saga_id in ids})
            timers.load(key)
            owned.add(key)
            held = {k for k in held if k[0] != key} | {(key, saga_id) for saga_id in ids}
            model = {k: at for k, at in model.items() if k[0] != key}
            model.update({(key, saga_id): value for saga_id in ids})
        else:
            assert isinstance(value, float)
            due = {k for k, at in model.items() if at <= value}
            popped = timers.due(value)
            assert len(popped) == len(set(popped)) and set(popped) == due
            model = {k: at for k, at in model.items() if k not in due}
        assert len(timers) == len(model)
        assert {k for k in held if store.wake(*k) is not None} == set(model)
    assert len(dict(store.items())) == len(held)


def test_timers_pop_only_what_is_due_with_its_latest_time() -> None:
    store = StateStore()
    timers = Timers(store)
    store.load(0, {"a": store.pack(STATE)})
    store.load(1, {"b": store.pack(STATE)})
    timers.set((0, "a"), 10)
    timers.set((1, "b"), 5)
    timers.set((0, "a"), 20)  # moved later: the entry at 10 is stale
    timers.set((2, "c"), 1)  # not held: nothing to wake
    assert timers.due(4) == []
    assert timers.due(15) == [(1, "b")]
    assert timers.due(15) == []  # popped once
    timers.set((1, "b"), 15.75)
    assert timers.due(15.5) == []  # the same second, later in it
    assert timers.due(15.75) == [(1, "b")]
    store.drop(0)
    timers.drop_partition(0)
    assert timers.due(100) == []
    assert len(timers) == 0


def test_timers_stay_bounded_when_wake_times_keep_moving() -> None:
    store = StateStore()
    timers = Timers(store)
    store.load(0, {"a": store.pack(STATE)})
    for i in range(10_000):
        timers.set((0, "a"), 1_000_000 + i)
    assert timers._listed == 1  # moved later: still listed at its first second
    for i in range(10_000):
        timers.set((0, "a"), 999_999 - i)
    assert timers._listed <= 1024 + 1  # moved earlier: listed anew, stale entries dropped
    assert timers.due(2_000_000) == [(0, "a")]


def test_a_saga_is_woken_at_its_latest_time_moved_later_or_earlier() -> None:
    store = StateStore()
    timers = Timers(store)
    store.load(0, {"a": store.pack(STATE)})
    timers.set((0, "a"), 10.5)
    timers.set((0, "a"), 30.25)
    assert timers.due(11) == []  # its entry at 10 moved on to 30
    assert timers.due(30) == []
    timers.set((0, "a"), 40)
    assert timers.due(31) == []  # and on to 40
    timers.set((0, "a"), 39.5)  # a second earlier
    assert timers.due(39.5) == [(0, "a")]
    assert timers.due(40) == []  # its entry at 40 is a stale one
    assert timers._listed == 0


def test_timers_hold_the_stores_own_id_objects_not_copies() -> None:
    """An id is ~70-85 bytes: a second copy per open saga would undo most of what keeping
    the wake time in the store saves."""
    store = StateStore()
    timers = Timers(store)
    restored = "".join(["saga-", "1"])
    store.load(0, {restored: store.pack(STATE, 7.0)})
    timers.load(0)
    committed = "".join(["saga-", "1"])  # the id a later event's key decodes to: equal, not same
    assert committed is not restored
    for moved in store.apply({(0, committed): STATE}, wakes={(0, committed): 9.0}):
        timers.moved(*moved)
    [(held, at)] = store.wakes(0)
    assert held is restored and at == 9.0
    assert timers.due(8) == []  # its entry at 7 moves on to 9, the same object
    listed = [
        saga_id for lists in timers._lists.values() for ids in lists.values() for saga_id in ids
    ]
    assert listed == [restored] and listed[0] is restored
    timers._rebuild()
    listed = [
        saga_id for lists in timers._lists.values() for ids in lists.values() for saga_id in ids
    ]
    assert listed == [restored] and listed[0] is restored
    assert timers.due(9) == [(0, restored)]
    again = "".join(["saga-", "1"])  # armed anew by a later commit: listed, and held, as it
    for moved in store.apply({(0, again): STATE}, wakes={(0, again): 12.0}):
        timers.moved(*moved)
    [(held, at)] = store.wakes(0)
    listed = [
        saga_id for lists in timers._lists.values() for ids in lists.values() for saga_id in ids
    ]
    assert held is again and listed == [again] and listed[0] is again
