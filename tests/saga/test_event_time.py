"""The tracker reads ``ce_time`` from any producer: whatever the header holds, it never fails."""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from choreo._saga.event_time import event_time as _event_time


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


def parsed(value: bytes) -> float | None:
    """What the header means, worked out afresh (the reader keeps each second it parsed)."""
    try:
        at = datetime.fromisoformat(value.decode())
    except (UnicodeDecodeError, ValueError):
        return None
    return None if at.tzinfo is None else at.timestamp()


utc_times = st.datetimes(
    min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=st.just(UTC)
)


@settings(max_examples=500, deadline=None, derandomize=True)
@given(utc_times, st.binary(min_size=3, max_size=3))
def test_choreo_headers_read_the_same_from_the_kept_second(at: datetime, millis: bytes) -> None:
    """A second already parsed, and a whole header already read, give the same float as
    parsing (``timestamp()`` rounds the exact quotient once), and milliseconds that are not
    digits are refused as before, however often they come."""
    at = at.replace(microsecond=at.microsecond // 1000 * 1000)
    header = at.isoformat(timespec="milliseconds").encode()
    for _ in range(3):  # parsed, from the kept second, from the kept header
        assert _event_time(bytes(header)) == at.timestamp()
    other = header[:20] + millis + header[23:]
    assert _event_time(other) == parsed(other)
    assert _event_time(bytes(other)) == parsed(other)


def test_an_hour_of_24_is_read_as_parsing_reads_it_however_often() -> None:
    """Python 3.14 reads ``T24:00:00.000`` as the next midnight and refuses any other time in
    hour 24 (3.11 refuses them all): a kept second must not answer for the second."""
    midnight = b"2026-11-21T24:00:00.000+00:00"
    later = b"2026-11-21T24:00:00.123+00:00"
    for _ in range(2):
        assert _event_time(bytes(midnight)) == parsed(midnight)
        assert _event_time(bytes(later)) == parsed(later)
