"""Event metadata in Kafka headers, after the CloudEvents Kafka binding (binary mode).

The payload stays pure Avro; who/what/when and the causal chain ride in
headers, so tools can route and trace without decoding the body.
"""

from __future__ import annotations

import operator
import os
import time
from datetime import UTC, datetime

from choreo._transport.base import Headers

ID = "ce_id"
TYPE = "ce_type"
SOURCE = "ce_source"
TIME = "ce_time"
SPECVERSION = "ce_specversion"
CORRELATION = "choreo_correlation_id"
"""The business transaction (saga) this event belongs to."""
CAUSATION = "choreo_causation_id"
"""The ``ce_id`` of the event whose handler emitted this one."""
DELIVER_AT_MS = "choreo_deliver_at_ms"
"""On a scheduled topic: epoch milliseconds before which consumers must not handle the event."""

_SPEC = b"1.0"


_IDS_PER_DRAW = 256
_UUID_AND = int.from_bytes(bytes([*[0xFF] * 6, 0x0F, 0xFF, 0x3F, *[0xFF] * 7]) * _IDS_PER_DRAW)
_UUID_OR = int.from_bytes(bytes([*[0] * 6, 0x40, 0, 0x80, *[0] * 7]) * _IDS_PER_DRAW)
"""Per 16 bytes: the version (4) in byte 6's high nibble, the RFC 4122 variant (``10``) in
byte 8's high bits, as ``uuid.uuid4`` sets them; the other 122 bits stay random."""
_UUID_GROUPS = operator.itemgetter(
    slice(0, 8), slice(8, 12), slice(12, 16), slice(16, 20), slice(20, 32)
)
_UUID_CUTS = [slice(i, i + 32) for i in range(0, 32 * _IDS_PER_DRAW, 32)]
_ids: list[str] = []
"""Event ids drawn ahead; ``list.pop`` hands each one out once, whichever thread asks."""
os.register_at_fork(after_in_child=_ids.clear)  # a forked child must not repeat its parent's


def new_event_id() -> str:
    """A random (version 4) UUID as text, as ``str(uuid.uuid4())`` writes it.

    Every emitted event gets one, so they are made 256 at a time from one ``os.urandom``
    call (a system call per id was ~8% of a relaying service's event-loop thread), the bits
    set and the text cut by C calls over the whole draw, no ``UUID`` objects."""
    try:
        return _ids.pop()
    except IndexError:
        _ids.extend(_draw_ids())
        return _ids.pop()


def _draw_ids() -> list[str]:
    bits = int.from_bytes(os.urandom(16 * _IDS_PER_DRAW)) & _UUID_AND | _UUID_OR
    digits = bits.to_bytes(16 * _IDS_PER_DRAW).hex()
    return list(map("-".join, map(_UUID_GROUPS, map(digits.__getitem__, _UUID_CUTS))))


_now: tuple[int, bytes] = (-1, b"")
"""The last ``ce_time``: the epoch millisecond it is for, and its text."""


def _ce_time() -> bytes:
    """Now in UTC, ISO 8601 to the millisecond, as ``datetime.now(UTC).isoformat(timespec=
    "milliseconds")`` writes it; formatted once per millisecond, not once per event."""
    global _now
    ms = time.time_ns() // 1_000_000
    last = _now
    if last[0] == ms:
        return last[1]
    at = datetime.fromtimestamp(ms // 1000, UTC).replace(microsecond=ms % 1000 * 1000)
    text = at.isoformat(timespec="milliseconds").encode()
    _now = (ms, text)
    return text


def event_headers(
    event_type: bytes,
    source: bytes,
    event_id: str,
    correlation_id: str,
    causation_id: str | None,
) -> Headers:
    """Headers of a freshly emitted event; ``event_type``/``source`` come pre-encoded (cached)."""
    headers: Headers = [
        (ID, event_id.encode()),
        (TYPE, event_type),
        (SOURCE, source),
        (TIME, _ce_time()),
        (SPECVERSION, _SPEC),
        (CORRELATION, correlation_id.encode()),
    ]
    if causation_id is not None:
        headers.append((CAUSATION, causation_id.encode()))
    return headers


def lenient_text(value: bytes | None) -> str | None:
    """A header value as text for reading or showing, whatever a foreign client wrote.

    Bytes that are not UTF-8 keep their readable part (U+FFFD for the rest) instead
    of raising, and a null value is absent (None), so a tool, a trace link or a
    test reader never stops on one record's damaged header. Not for headers that
    decide what happens to a record (ids, correlation): those are checked strictly.
    """
    return None if value is None else value.decode("utf-8", "replace")
