"""Emitted event ids are uuid5 values: a compensation re-sent after an upgrade must keep the
``ce_id`` it was first sent with, or an idempotent consumer applies it twice."""

from __future__ import annotations

import uuid

from hypothesis import given
from hypothesis import strategies as st

from choreo._saga.engine import _IDS, _event_id

names = st.text(st.characters(exclude_categories=("Cs",)), max_size=40)


@given(names, names, st.integers(min_value=0, max_value=10**6))
def test_ids_are_the_uuid5_of_the_emission(saga_id: str, what: str, attempt: int) -> None:
    expected = str(uuid.uuid5(_IDS, f"{saga_id}/{what}/{attempt}"))
    assert _event_id(saga_id, what, attempt) == expected


def test_an_id_published_before_stays_the_same() -> None:
    assert _event_id("order-17", "stock", 1) == "0133bc41-40ba-59e8-8ab7-9e9d48f2ba2f"
