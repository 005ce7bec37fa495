"""Dead-letter headers are written by whoever may write the DLQ topic: any bytes in any of them
must leave ``dlq show`` and ``replay``'s selection working and the terminal untouched."""

from __future__ import annotations

import os
import random
from datetime import UTC, datetime

from choreo._cli.dlq import _describe, _safe
from choreo._dlq.reader import DeadLetter
from choreo._dlq.replay import Selection
from choreo._runtime import dead_letters as dlq

CHOREO_HEADERS = (
    dlq.REASON,
    dlq.TOPIC,
    dlq.PARTITION,
    dlq.OFFSET,
    dlq.GROUP,
    dlq.ERROR_TYPE,
    dlq.ERROR_MESSAGE,
    dlq.ATTEMPTS,
    dlq.FAILED_AT,
    "ce_type",
    "ce_id",
)
NASTY = (
    b"",
    b"\xff\xfe\x00\x80",
    b"\x1b[2J\x1b]0;owned\x07",
    b"2026-13-45T99:99:99",
    b"9" * 400,
    b"2026-11-21T10:00:00",  # no zone
    b"2026-11-21T10:00:00+14:00",
    b"-999999999-01-01",
    "2026-11-21T10:00:00\u00a0".encode(),
)


def _random_bytes(rng: random.Random) -> bytes | None:
    roll = rng.random()
    if roll < 0.1:
        return None
    if roll < 0.5:
        return rng.choice(NASTY)
    return rng.randbytes(rng.randrange(0, 64))


def _record(rng: random.Random) -> DeadLetter:
    headers = [(name, _random_bytes(rng)) for name in CHOREO_HEADERS if rng.random() < 0.9]
    return DeadLetter(
        topic="choreo.dlq.svc.shop.orders",
        partition=0,
        offset=rng.randrange(1000),
        key=rng.choice((None, rng.randbytes(8))),
        value=rng.choice((None, rng.randbytes(rng.randrange(200)), b"text value")),
        headers=headers,  # type: ignore[arg-type]  # a foreign client may send null values
        timestamp_ms=rng.choice((-1, 0, 1_790_000_000_000)),
    )


def test_any_header_bytes_are_shown_and_selected_without_an_exception() -> None:
    seed = int(os.environ.get("CHOREO_TEST_SEED", random.randrange(2**32)))
    print(f"seed {seed} (CHOREO_TEST_SEED reruns it)")
    rng = random.Random(seed)
    window = Selection(
        since=datetime(2020, 1, 1, tzinfo=UTC), until=datetime(2030, 1, 1, tzinfo=UTC)
    )
    for _ in range(3000):
        record = _record(rng)
        assert record.failed_at.tzinfo is not None
        window.matches(record)
        Selection(reason="handler-error", error_type="ValueError").matches(record)
        shown = _describe(record, 64)
        assert "\x1b" not in shown and "\x07" not in shown, shown


def test_a_failed_at_that_is_not_a_time_falls_back_to_the_record_timestamp() -> None:
    record = DeadLetter(
        "choreo.dlq.svc.t", 0, 0, None, None, [(dlq.FAILED_AT, b"\xff\xfe")], 1_790_000_000_000
    )
    assert record.failed_at == datetime.fromtimestamp(1_790_000_000, UTC)


def test_a_failed_at_without_a_zone_is_utc() -> None:
    record = DeadLetter(
        "choreo.dlq.svc.t", 0, 0, None, None, [(dlq.FAILED_AT, b"2026-11-21T10:00:00")], 0
    )
    assert record.failed_at == datetime(2026, 11, 21, 10, tzinfo=UTC)


def test_control_characters_are_escaped_not_printed() -> None:
    assert _safe("a\x1b[2Jb\nc") == "a\\x1b[2Jb\\nc"
