"""Hypothesis strategies for saga states' pieces, shared by the tests of how states are written
(``test_state_format.py``) and read back without a parse (``test_peek.py``)."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from choreo._saga.state import SeenEvent, payload_json

times = st.floats(allow_nan=False, allow_infinity=False)


def seen_events(
    text: st.SearchStrategy[str], keys: st.SearchStrategy[str] | None = None
) -> st.SearchStrategy[SeenEvent]:
    """Seen events whose payloads are any JSON, with ``keys`` (default: ``text``) as its keys:
    the peek's tests pass keys named like the state's own fields."""
    keys = text if keys is None else keys
    values: st.SearchStrategy[Any] = st.recursive(
        st.none() | st.booleans() | st.integers() | times | text,
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(keys, inner, max_size=4),
        max_leaves=12,
    )
    return st.builds(
        SeenEvent,
        id=text,
        type=text,
        payload=st.dictionaries(keys, values, max_size=5).map(payload_json),
        at=times,
        occurred_at=st.none() | times,
        source=st.none() | text,
    )
