"""Restore reads a state's timing fields from its JSON without parsing it (``peek``): for any
state ``SagaState`` writes (payloads with keys named like the state's own fields, strings with
quotes, backslashes and braces, any times and sub-saga versions), the peeked fields are the
parsed ones, and the peek is taken (a silent fallback to the parse would only be slow). JSON laid
out otherwise is parsed, never misread."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from state_strategies import seen_events, times

from choreo._saga.peek import LAID_OUT, peek, timing
from choreo._saga.state import HistoryEntry, SagaState, SagaStatus, StepState

TRICKY = ["wake_at", "sub_versions", "updated_at", "history", "status", "version", "saga_id"]
text = st.text(st.characters(codec="utf-8"), max_size=12) | st.sampled_from(
    [*TRICKY, '"wake_at":1,', '"sub_versions":{},"wake_at":null,"updated_at":1,"history":[', "\\"]
)
keys = text | st.sampled_from(TRICKY)
events = seen_events(text, keys)
states = st.builds(
    SagaState,
    saga_id=text,
    saga=text,
    version=st.integers(-(2**40), 2**40),
    status=st.sampled_from(SagaStatus),
    start=st.none() | events,
    trace=st.dictionaries(keys, text, max_size=2),
    steps=st.dictionaries(keys, st.builds(StepState, result=st.none() | events), max_size=3),
    reason=st.none() | text,
    buffer=st.lists(events, max_size=2),
    sub_versions=st.dictionaries(keys, st.integers(-(2**40), 2**40), max_size=3),
    wake_at=st.none() | times,
    updated_at=times,
    history=st.lists(
        st.builds(HistoryEntry, at=times, trigger=text, step=st.none() | text, action=text),
        max_size=3,
    ),
)


def fields(found: Any) -> tuple[Any, ...]:
    return (found.version, found.status, found.sub_versions, found.wake_at, found.updated_at)


def test_the_state_is_laid_out_as_the_peek_reads_it() -> None:
    assert LAID_OUT


@settings(max_examples=200, derandomize=True, deadline=None)
@given(states)
def test_any_written_state_peeks_as_it_parses(state: SagaState) -> None:
    data = state.to_bytes()
    peeked = peek(data)
    assert peeked is not None, data
    assert fields(peeked) == fields(SagaState.from_bytes(data))


@settings(max_examples=100, derandomize=True, deadline=None)
@given(states)
def test_json_laid_out_otherwise_is_parsed_not_misread(state: SagaState) -> None:
    """Key order changed (the payloads' ``wake_at`` keys may then come last) or spaces: the
    peek gives up or reads the same values; ``timing`` always has the parsed ones."""
    for data in (
        json.dumps(json.loads(state.to_bytes()), sort_keys=True).encode(),
        json.dumps(json.loads(state.to_bytes())).encode(),
    ):
        parsed = fields(SagaState.from_bytes(data))
        peeked = peek(data)
        assert peeked is None or fields(peeked) == parsed
        assert fields(timing(data)) == parsed
