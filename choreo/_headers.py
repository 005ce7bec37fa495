"""Event metadata in Kafka headers, after the CloudEvents Kafka binding (binary mode).

The payload stays pure Avro; who/what/when and the causal chain ride in
headers, so tools can route and trace without decoding the body.
"""

from __future__ import annotations

import os
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


def new_event_id() -> str:
    """A random (version 4) UUID as text, as ``str(uuid.uuid4())`` writes it, without building
    the ``UUID`` object: every emitted event gets one, and the object was half its cost."""
    raw = bytearray(os.urandom(16))
    raw[6] = raw[6] & 0x0F | 0x40  # version 4
    raw[8] = raw[8] & 0x3F | 0x80  # the RFC 4122 variant
    h = raw.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


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
        (TIME, datetime.now(UTC).isoformat(timespec="milliseconds").encode()),
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
