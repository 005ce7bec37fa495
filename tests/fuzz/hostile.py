"""Hypothesis strategies for records a foreign or hostile client could write to a topic.

Values mix random bytes with near misses of real events (flipped bytes, cuts, trailing bytes,
a known fingerprint over a random body, registry framing), because random bytes alone never
get past the first header check. Headers mix choreo's own names with any name, valid event
types with any bytes, and Kafka's null header value.
"""

from __future__ import annotations

from hypothesis import strategies as st

from choreo._runtime import admission, retry_topics
from choreo._schemas import Catalog
from choreo._schemas.codec import MAGIC
from choreo._transport.base import Headers

CHOREO_NAMES = [
    *sorted(admission.TEXT | admission.NUMBERS),  # every header admission checks
    retry_topics.LEVEL,
    retry_topics.ATTEMPTS,
    retry_topics.ORIGIN_TOPIC,
    retry_topics.ORIGIN_PARTITION,
    retry_topics.ORIGIN_OFFSET,
    retry_topics.DUE_MS,
    "traceparent",
    "tracestate",
    "baggage",
]


def _mutate(value: bytes, edits: list[tuple[int, int]]) -> bytes:
    data = bytearray(value)
    for index, byte in edits:
        data[index % len(data)] = byte
    return bytes(data)


def values(catalog: Catalog, goods: list[bytes]) -> st.SearchStrategy[bytes | None]:
    good = st.sampled_from(goods)
    fingerprints = st.sampled_from(sorted(catalog.fingerprints))
    edit = st.tuples(st.integers(0, 10_000), st.integers(0, 255))
    return st.one_of(
        st.none(),
        st.binary(max_size=64),
        st.builds(lambda fp, body: MAGIC + fp + body, fingerprints, st.binary(max_size=200)),
        st.builds(_mutate, good, st.lists(edit, min_size=1, max_size=4)),
        st.builds(lambda g, n: g[:n], good, st.integers(0, 300)),
        st.builds(lambda g, tail: g + tail, good, st.binary(min_size=1, max_size=8)),
        st.builds(lambda i, body: b"\x00" + i + body, st.binary(min_size=4, max_size=4), good),
        good,
    )


def headers(catalog: Catalog) -> st.SearchStrategy[Headers]:
    types = [t.encode() for t in catalog.event_types]
    name = st.one_of(st.sampled_from(CHOREO_NAMES), st.text(max_size=12))
    value = st.one_of(
        st.binary(max_size=24),
        st.sampled_from(types),
        st.sampled_from([b"1", b"0", b"-1", b"99999999999999999999999", b"1e3", "é".encode()]),
        st.none(),
    )
    return st.lists(st.tuples(name, value), max_size=8)
