"""Fuzzing the decode and header path: any value, any headers, any key.

Every record must become an event, a skip, or a :class:`DecodeError` with a known reason;
nothing else may escape, and once a record is routed its metadata must read without error.
The bounded CI run takes a few seconds per property; for a campaign set
``CHOREO_FUZZ_EXAMPLES`` (examples per property) and ``CHOREO_FUZZ_DB`` (a directory that
keeps the corpus of interesting inputs between runs).
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import hostile
import pytest
from builders import placed, received, reserved
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from hypothesis.database import DirectoryBasedExampleDatabase

import choreo
from choreo import _headers
from choreo._context import Context
from choreo._emitter import Emitter
from choreo._errors import DecodeError
from choreo._runtime import dead_letters as dlq
from choreo._runtime.dispatch import Dispatcher
from choreo._runtime.retry_topics import RetryTopics, due_at, retry_state
from choreo._schemas import Catalog, Codec
from choreo._transport.base import Headers, Record
from choreo._transport.memory import MemoryTransport
from choreo.testing import TestService
from services.events import OrderPlaced

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = int(os.environ.get("CHOREO_FUZZ_EXAMPLES", "0"))
DB = os.environ.get("CHOREO_FUZZ_DB")

REASONS = {
    "not-avro",
    "registry-framed",
    "unknown-fingerprint",
    "truncated",
    "invalid",
    "tombstone",
    "too-large",
    "wrong-type",
    "incompatible",
    "bad-header",
    "unknown-type",
    "wrong-topic",
}
"""Every reason the decode and header path may give; anything else is a defect."""

CATALOG = Catalog.load(ROOT / "schemas")
CODEC = Codec(CATALOG)
TOPIC = CATALOG.topic_of(OrderPlaced.event_type).name
GOODS = [CODEC.encode(e) for e in (placed("fuzz-1"), received("fuzz-2"), reserved("fuzz-3"))]
RECORDS = st.builds(
    lambda value, headers, key: Record(TOPIC, 0, 7, key, value, headers, 0),
    hostile.values(CATALOG, GOODS),
    hostile.headers(CATALOG),
    st.one_of(st.none(), st.binary(max_size=16)),
)
fates: Counter[str] = Counter()


def _campaign(default: int) -> settings:
    return settings(
        max_examples=EXAMPLES or default,
        deadline=None,
        database=DirectoryBasedExampleDatabase(DB) if DB else None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )


def _service() -> choreo.Service:
    svc = choreo.Service("fuzzed")

    @svc.on(OrderPlaced)
    def take(event: OrderPlaced, ctx: choreo.Context) -> None:
        for read in (ctx.event_id, ctx.event_type, ctx.source, ctx.correlation_id):
            assert read is None or isinstance(read, str)

    return svc


def _dispatcher() -> Dispatcher:
    producer = MemoryTransport().producer("fuzz")
    codec = Codec(CATALOG)
    codec.register(OrderPlaced)
    return Dispatcher(
        _service(),
        codec,
        Emitter(CATALOG, codec, producer, "fuzzed"),
        dlq.DeadLetters(producer, "fuzzed", "fuzzed"),
        RetryTopics(producer, "fuzzed", None),
    )


DISPATCHER = _dispatcher()


def read(record: Record) -> str:
    """Route and decode as a worker does, then read what a handler can; the record's fate."""
    try:
        routed = DISPATCHER.route(record)
        if routed is None:
            return "skipped"
        routed[1](record)  # the decoder
    except DecodeError as error:
        assert error.reason in REASONS, f"unknown reason {error.reason!r}: {error}"
        return error.reason
    ctx = Context("fuzzed", record)
    for value in (ctx.event_id, ctx.event_type, ctx.source, ctx.correlation_id, ctx.causation_id):
        assert value is None or isinstance(value, str)
    return "decoded"


@_campaign(1200)
@given(RECORDS)
def test_any_record_decodes_or_fails_with_a_reason(record: Record) -> None:
    fate = read(record)
    fates[fate] += 1
    event(fate)
    state = retry_state(record)  # read before any fate, also to park: must never raise
    assert state.origin_topic and state.attempts >= 0
    due = due_at(record)
    assert due is None or due >= 0


def _sized(most: int) -> st.SearchStrategy[bytes]:
    """Bytes of any length up to ``most``, cheap to generate (the content does not matter)."""
    return st.builds(lambda n, b: b * n, st.integers(0, most), st.binary(min_size=1, max_size=1))


@_campaign(200)
@given(
    st.one_of(st.none(), st.binary(max_size=64)),
    st.one_of(st.none(), _sized(2_000_000)),
    st.lists(st.tuples(st.text(max_size=8), _sized(400_000)), max_size=6),
)
def test_a_dead_letter_fits_and_keeps_what_it_can_byte_for_byte(
    key: bytes | None, value: bytes | None, headers: Headers
) -> None:
    failure = dlq.failure_headers(
        "too-large", "t", 0, 1, 2, b"g", ValueError("x" * 10_000), attempts=1
    )
    out_key, out_value, out_headers = dlq.bounded(key, value, headers, failure)
    size = len(out_key or b"") + len(out_value or b"")
    size += sum(len(n) + len(v or b"") for n, v in out_headers)
    assert size <= dlq.MAX_BYTES
    assert out_key == key
    extra = dict(h for h in out_headers[-2:] if h[0] in (dlq.VALUE_BYTES, dlq.HEADERS_DROPPED))
    kept = out_headers[: len(out_headers) - len(failure) - len(extra)]
    assert kept == headers[: len(kept)]  # the record's own headers: a byte-exact prefix
    assert out_headers[len(kept) :][: len(failure)] == failure
    if len(kept) < len(headers):
        assert extra[dlq.HEADERS_DROPPED] == str(len(headers) - len(kept)).encode()
    if value is not None and out_value != value:
        assert value.startswith(out_value or b"")
        assert extra[dlq.VALUE_BYTES] == str(len(value)).encode()


@_campaign(300)
@given(st.one_of(st.none(), st.binary(max_size=64), st.text(max_size=16).map(str.encode)))
def test_a_lenient_header_read_never_fails_and_keeps_utf8_exact(value: bytes | None) -> None:
    """What the DLQ tool, the saga tracker's trace link and test readers show of any header."""
    text = _headers.lenient_text(value)
    if value is None:
        assert text is None
        return
    assert text is not None
    try:
        assert text == value.decode()
    except UnicodeDecodeError:
        assert "\ufffd" in text  # the unreadable part is marked, the rest kept
        assert text.encode("utf-8", "replace") != value


@pytest.fixture(scope="module")
def running() -> Iterator[TestService]:
    with TestService(_service(), raise_errors=False) as t:
        yield t


@_campaign(100)
@given(record=RECORDS)
def test_the_runtime_handles_skips_or_parks_any_record(
    running: TestService, record: Record
) -> None:
    """Through a whole service: the record's fate, and a dead letter keeps every header."""
    before = len(running.dead_letters(TOPIC))
    running.send_raw(TOPIC, record.value, key=record.key, headers=record.headers)
    parked = running.dead_letters(TOPIC)[before:]
    expected = read(record)
    if expected in ("decoded", "skipped"):
        assert parked == []
        return
    [letter] = parked
    assert letter.header(dlq.REASON) == expected.encode()
    assert letter.headers[: len(record.headers)] == record.headers
    assert letter.value == record.value and letter.key == record.key


def teardown_module() -> None:
    print(f"\nfuzz fates: {dict(fates)}")
