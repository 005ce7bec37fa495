"""``check_headers`` against its rule, on any header list a foreign client can write.

The rule, header by header: a null value counts as absent; a CloudEvents or choreo text
header must be UTF-8; a number header must be 1-20 ASCII digits; any other header may hold
anything. The first header breaking it is named in a ``bad-header`` error. The function takes
a shortcut for what choreo itself writes; whatever the bytes, it must agree with the rule.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from choreo import _headers
from choreo._errors import DecodeError
from choreo._runtime.admission import NUMBERS, TEXT, check_headers
from choreo._transport.base import Headers, Record

NAMES = st.sampled_from([*sorted(TEXT | NUMBERS), "traceparent", "x-user", "ce_idx", ""])
"""Repeats of ``ce_type`` are drawn too: the type returned must be the last one."""
VALUES = st.one_of(
    st.none(),
    st.binary(max_size=24),
    st.text(max_size=12).map(str.encode),  # UTF-8, ASCII or not
    st.integers(0, 10**22).map(lambda n: str(n).encode()),  # numbers, some past 20 digits
    st.sampled_from([b"", b"\xff", b"\xc3\xa9", b"12a", b"\xe2\x82"]),
)


def first_bad(headers: Headers) -> str | None:
    """The name of the first header the rule refuses, or None."""
    for name, value in headers:
        if value is None:
            continue
        if name in TEXT:
            try:
                value.decode()
            except UnicodeDecodeError:
                return name
        elif name in NUMBERS and not (value and len(value) <= 20 and value.isdigit()):
            return name
    return None


@settings(max_examples=400, deadline=None)
@given(headers=st.lists(st.tuples(NAMES, VALUES), max_size=9))
def test_check_headers_follows_the_rule(headers: Headers) -> None:
    record = Record("t", 0, 7, None, b"", headers, 0)
    bad = first_bad(headers)
    if bad is None:  # admitted: routing gets the type Record.header reads (the last one)
        assert check_headers(record) == record.header(_headers.TYPE)
        return
    with pytest.raises(DecodeError) as raised:
        check_headers(record)
    assert raised.value.reason == "bad-header"
    assert f"t[0]@7: header {bad} " in str(raised.value)


def test_what_choreo_writes_passes() -> None:
    headers = _headers.event_headers(b"a.b.C", b"svc", _headers.new_event_id(), "c", "d")
    assert check_headers(Record("t", 0, 0, None, b"", headers, 0)) == b"a.b.C"
