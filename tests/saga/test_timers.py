"""The tracker's timers against a plain dict of wake times: any sequence of sets, forgets,
moved times, dropped partitions and ticks (enough to rebuild the heap) pops exactly the sagas
a dict says are due, each once, and counts what it holds. The heap is rebuilt past 4 entries
here (1,024 in the tracker), so the examples rebuild it often."""

from __future__ import annotations

from unittest.mock import patch

from hypothesis import given, settings
from hypothesis import strategies as st

from choreo._saga import timers as timers_module
from choreo._saga.timers import Timers

keys = st.tuples(st.integers(0, 1), st.sampled_from(["a", "b", "c"]))
"""Few sagas, so their wake times move often and stale heap entries pile up."""
operations = st.lists(
    st.one_of(
        st.tuples(st.just("set"), keys, st.none() | st.integers(0, 100).map(float)),
        st.tuples(st.just("set"), keys, st.integers(0, 100).map(float)),
        st.tuples(st.just("drop"), st.integers(0, 1), st.none()),
        st.tuples(st.just("due"), st.none(), st.integers(0, 100).map(float)),
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
    timers, model = Timers(), {}
    for op, key, value in ops:
        if op == "set":
            assert isinstance(key, tuple)
            timers.set(key, value if isinstance(value, float) else None)
            if value is None:
                model.pop(key, None)
            else:
                model[key] = value
        elif op == "drop":
            assert isinstance(key, int)
            timers.drop_partition(key)
            model = {k: at for k, at in model.items() if k[0] != key}
        else:
            assert isinstance(value, float)
            due = {k for k, at in model.items() if at <= value}
            popped = timers.due(value)
            assert len(popped) == len(set(popped)) and set(popped) == due
            model = {k: at for k, at in model.items() if k not in due}
        assert len(timers) == len(model)
