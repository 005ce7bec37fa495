"""The tracker reads ``ce_time`` from any producer: whatever the header holds, it never fails."""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from choreo._saga.tracker import _event_time


def test_a_zoned_iso_time_is_read() -> None:
    at = datetime(2026, 11, 21, 12, 0, 0, 101000, tzinfo=UTC)
    assert _event_time(at.isoformat(timespec="milliseconds").encode()) == at.timestamp()


def test_missing_or_zoneless_times_are_unknown() -> None:
    assert _event_time(None) is None
    assert _event_time(b"2026-11-21T12:00:00") is None  # whose local time? not trusted
    assert _event_time(b"\xff\xfe") is None
    assert _event_time(b"yesterday") is None


@settings(max_examples=300, deadline=None, derandomize=True)
@given(st.binary(max_size=64))
def test_any_header_bytes_give_a_time_or_none(value: bytes) -> None:
    result = _event_time(value)
    assert result is None or isinstance(result, float)
