"""Park a message that cannot be handled, with everything needed to understand and replay it.

Naming: ``choreo.dlq.<service>.<source topic>``, one dead-letter topic per
service and source topic, so a team owns its DLQ and replays go back to
exactly one place.
"""

from __future__ import annotations

import asyncio
import traceback
from datetime import UTC, datetime

from choreo._errors import TransportError
from choreo._runtime.instrument import Instrumentation
from choreo._runtime.retry_topics import HEADER_PREFIX as RETRY_HEADERS
from choreo._runtime.retry_topics import retry_state
from choreo._transport.base import Headers, Producer, Record

PREFIX = "choreo.dlq."
MAX_TRACE_CHARS = 4000

REASON = "choreo_dlq_reason"
"""A stable short code: ``handler-error``, ``not-avro``, ``unknown-fingerprint`` ..."""
TOPIC = "choreo_dlq_topic"
PARTITION = "choreo_dlq_partition"
OFFSET = "choreo_dlq_offset"
TIMESTAMP = "choreo_dlq_timestamp"
GROUP = "choreo_dlq_group"
ERROR_TYPE = "choreo_dlq_error_type"
ERROR_MESSAGE = "choreo_dlq_error_message"
STACKTRACE = "choreo_dlq_stacktrace"
ATTEMPTS = "choreo_dlq_attempts"
FAILED_AT = "choreo_dlq_failed_at"
VALUE_BYTES = "choreo_dlq_value_bytes"
"""Only on a dead letter whose value was cut to fit: the original value's size in bytes."""
HEADERS_DROPPED = "choreo_dlq_headers_dropped"
"""Only when the original headers alone did not fit: how many of the last ones were left out."""
SCRUBBED = frozenset({ERROR_MESSAGE, STACKTRACE})
"""Headers holding text from outside choreo (an error's message): secrets are masked there.
Every other header, the record's own above all, is kept byte for byte."""

MAX_BYTES = 900_000
"""What a dead letter may weigh (key, value, headers): under librdkafka's default
``message.max.bytes`` (1,000,000) with room for its framing, so a record of any size the
broker accepted can be parked. A bigger value keeps its first bytes and ``VALUE_BYTES``."""


class DeadLetterRefused(TransportError):
    """The broker did not take a dead letter (an ACL, a topic limit, a deleted topic).

    Its record's partition stops there, uncommitted and paused, while the other partitions
    go on; ``/readyz`` and ``choreo_partition_stopped`` say which and why. A restart reads
    the record again once someone fixed the cause.
    """


def dlq_topic(service: str, topic: str) -> str:
    return f"{PREFIX}{service}.{topic}"


def failure_headers(
    reason: str,
    topic: str,
    partition: int,
    offset: int,
    timestamp_ms: int | None,
    group: bytes,
    error: BaseException,
    attempts: int,
) -> Headers:
    """The headers that say where a dead letter came from and why it could not be handled."""
    trace = "".join(traceback.format_exception(error))[-MAX_TRACE_CHARS:]
    return [
        (REASON, reason.encode()),
        (TOPIC, topic.encode()),
        (PARTITION, str(partition).encode()),
        (OFFSET, str(offset).encode()),
        (TIMESTAMP, str(timestamp_ms).encode()),
        (GROUP, group),
        (ERROR_TYPE, f"{type(error).__module__}.{type(error).__qualname__}".encode()),
        (ERROR_MESSAGE, str(error)[:MAX_TRACE_CHARS].encode()),
        (STACKTRACE, trace.encode()),
        (ATTEMPTS, str(attempts).encode()),
        (FAILED_AT, datetime.now(UTC).isoformat(timespec="milliseconds").encode()),
    ]


class DeadLetters:
    """Produces the original key, value and headers plus the failure's headers."""

    def __init__(
        self,
        producer: Producer,
        service: str,
        group: str,
        instrument: Instrumentation | None = None,
    ) -> None:
        self._instrument = instrument
        self._producer = producer
        self._service = service
        self._group = group.encode()

    async def park(
        self, record: Record, reason: str, error: BaseException, attempts: int
    ) -> asyncio.Future[None]:
        origin = retry_state(record)  # a record from a retry topic is parked under its source
        failure = failure_headers(
            reason,
            origin.origin_topic,
            origin.origin_partition,
            origin.origin_offset,
            record.timestamp_ms,
            self._group,
            error,
            attempts,
        )
        kept = record.headers
        if origin.level:  # the retry stage's own headers; every other header is kept as is
            kept = [(k, v) for k, v in kept if not k.startswith(RETRY_HEADERS)]
        if self._instrument is not None:
            self._instrument.inject(failure)  # the dead letter continues the record's trace
        key, value, headers = bounded(record.key, record.value, kept, failure)
        return await self._producer.send(
            dlq_topic(self._service, origin.origin_topic), key, value, headers
        )


def bounded(
    key: bytes | None, value: bytes | None, kept: Headers, failure: Headers
) -> tuple[bytes | None, bytes | None, Headers]:
    """Key, value and headers of a dead letter within ``MAX_BYTES``.

    The failure headers (already bounded) always fit; the record's headers are kept whole
    and in order as long as they fit, and the value keeps as many first bytes as remain.
    """
    room = MAX_BYTES - len(key or b"") - _size(failure) - 64  # 64: the two size headers
    headers: Headers = []
    for index, (name, data) in enumerate(kept):
        room -= len(name) + len(data or b"")
        if room < 0:
            room += len(name) + len(data or b"")
            failure = [*failure, (HEADERS_DROPPED, str(len(kept) - index).encode())]
            break
        headers.append((name, data))
    if value is not None and len(value) > room:
        failure = [*failure, (VALUE_BYTES, str(len(value)).encode())]
        value = value[:room]
    return key, value, [*headers, *failure]


def fits(record: Record, extra: int) -> bool:
    """Whether ``record`` plus ``extra`` bytes of headers can be produced whole (a retry)."""
    size = len(record.key or b"") + len(record.value or b"") + _size(record.headers)
    return size + extra <= MAX_BYTES


def _size(headers: Headers) -> int:
    return sum(len(name) + len(data or b"") for name, data in headers)
