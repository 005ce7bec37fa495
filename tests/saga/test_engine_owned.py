"""The engine changing a state in place (``copy=False``, as the tracker runs it) decides
exactly what it decides on a copy, in the model test's worlds (any definition, any arrival
order, crashes, duplicates, deadlines), and ``copy=True`` leaves the caller's state alone.

A shortcut the in-place path took (a rule reading a field it changed earlier in the same
decision, a branch that returns an untouched copy) would show here as a differing state,
emit or log line."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from test_engine_model import ANY_WORLD, World, check, run, worlds

from choreo.saga import Engine, Incoming, Outcome, SagaState

EXAMPLES = 300


class TwoWayEngine(Engine):
    """Decides every input twice, on a copy and in place, and fails on any difference."""

    def handle(
        self, state: SagaState | None, incoming: Incoming, now: float, *, copy: bool = True
    ) -> Outcome:
        before = None if state is None else state.to_bytes()
        expected = super().handle(state, incoming, now)
        owned = None if before is None else SagaState.from_bytes(before)
        _same(expected, super().handle(owned, incoming, now, copy=False), before, state)
        return expected

    def tick(self, state: SagaState, now: float, *, copy: bool = True) -> Outcome:
        before = state.to_bytes()
        expected = super().tick(state, now)
        _same(expected, super().tick(SagaState.from_bytes(before), now, copy=False), before, state)
        return expected


def _same(expected: Outcome, owned: Outcome, before: bytes | None, given: SagaState | None) -> None:
    assert (given is None and before is None) or (given is not None and given.to_bytes() == before)
    assert _as_bytes(owned.state) == _as_bytes(expected.state)
    assert (owned.emits, owned.logs, owned.changed) == (
        expected.emits,
        expected.logs,
        expected.changed,
    )


def _as_bytes(state: SagaState | None) -> bytes | None:
    return None if state is None else state.to_bytes()


@settings(ANY_WORLD, max_examples=EXAMPLES)
@given(worlds(), st.data())
def test_in_place_decides_as_on_a_copy(world: World, data: st.DataObject) -> None:
    world.engine = TwoWayEngine([world.saga])
    run(world, data)
    assert not check(world)
