"""The correlation a handler sees (and its emits carry) for records from any client."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from choreo import _headers
from choreo._context import Context
from choreo._transport.base import Record


def _context(key: bytes | None, headers: list[tuple[str, bytes | None]]) -> Context:
    return Context("svc", Record("shop.orders", 0, 0, key, b"", headers, 0))


def test_a_foreign_record_is_correlated_by_its_key_as_choreo_publishers_do() -> None:
    assert _context(b"o-7", []).correlation_id == "o-7"
    assert _context(b"o-7", [(_headers.ID, b"e-1")]).correlation_id == "o-7"


def test_a_correlation_header_wins_over_the_key() -> None:
    assert _context(b"o-7", [(_headers.CORRELATION, b"trip-1")]).correlation_id == "trip-1"


def test_without_a_readable_key_the_event_id_correlates() -> None:
    assert _context(None, [(_headers.ID, b"e-1")]).correlation_id == "e-1"
    assert _context(b"\xff\xfe", [(_headers.ID, b"e-1")]).correlation_id == "e-1"


@given(key=st.none() | st.binary(max_size=40))
def test_any_key_bytes_give_a_correlation_or_none_never_an_error(key: bytes | None) -> None:
    correlation = _context(key, []).correlation_id
    assert correlation is None or correlation.encode() == key
