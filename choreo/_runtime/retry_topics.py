"""The non-blocking retry stage: records wait out their delay in per-service retry topics.

Naming: ``choreo.retry.<service>.<source topic>.<level>``, level 1 for the
first delay of the policy, 2 for the next... A retry record keeps the original
key, value and headers (trace context included) plus ``choreo_retry_*``
headers saying where it came from, how many tries it had, when it first failed,
the last error and when it is due. The worker of a retry partition waits for
the head record's due time (no polling loop; records of one level are due in
the order they were written) and backpressure pauses the partition meanwhile.
"""

from __future__ import annotations

import asyncio
import math
from datetime import UTC, datetime
from typing import NamedTuple, overload

from choreo._headers import DELIVER_AT_MS
from choreo._runtime.clock import WallClock, current_clock
from choreo._runtime.instrument import Instrumentation
from choreo._transport.base import Headers, Producer, Record

PREFIX = "choreo.retry."
HEADER_PREFIX = "choreo_retry_"
LEVEL = "choreo_retry_level"
ATTEMPTS = "choreo_retry_attempts"
"""Tries made so far, in place and delayed."""
FIRST_FAILURE = "choreo_retry_first_failure"
LAST_ERROR = "choreo_retry_last_error"
DUE_MS = "choreo_retry_due_ms"
ORIGIN_TOPIC = "choreo_retry_origin_topic"
ORIGIN_PARTITION = "choreo_retry_origin_partition"
ORIGIN_OFFSET = "choreo_retry_origin_offset"
MAX_ERROR_CHARS = 1000
HEADERS_BYTES = 2 * MAX_ERROR_CHARS
"""At most what the ``choreo_retry_*`` headers and trace context add to a record."""


def retry_topic(service: str, topic: str, level: int) -> str:
    return f"{PREFIX}{service}.{topic}.{level}"


class RetryState(NamedTuple):
    """Where a record stands in the retry stages (level 0: it never failed before)."""

    level: int
    attempts: int
    origin_topic: str
    origin_partition: int
    origin_offset: int
    first_failure: str | None


def retry_state(record: Record) -> RetryState:
    """Read from the ``choreo_retry_*`` headers; damaged ones (a foreign writer) read as absent.

    Any header bytes can arrive here, and this runs before a record's fate is known (also
    when parking it), so it never raises. Only records of retry topics have a retry state:
    on any other topic the headers were not written by choreo's retry stage.
    """
    level = _number(record.header(LEVEL)) if record.topic.startswith(PREFIX) else None
    if level is None:  # elsewhere the headers are a foreign writer's: they cannot reroute
        return RetryState(0, 0, record.topic, record.partition, record.offset, None)
    return RetryState(
        level,
        _number(record.header(ATTEMPTS)) or 0,
        _text(record.header(ORIGIN_TOPIC)) or record.topic,
        _number(record.header(ORIGIN_PARTITION), -1),
        _number(record.header(ORIGIN_OFFSET), -1),
        _text(record.header(FIRST_FAILURE)) or None,
    )


def _text(value: bytes | None) -> str | None:
    try:
        return None if value is None else value.decode()
    except (UnicodeDecodeError, AttributeError):
        return None


@overload
def _number(value: bytes | None) -> int | None: ...
@overload
def _number(value: bytes | None, default: int) -> int: ...
def _number(value: bytes | None, default: int | None = None) -> int | None:
    """A decimal header value, or ``default`` when absent or not a plain ASCII number."""
    if not value or len(value) > 20 or not value.isdigit():
        return default
    return int(value)


def due_at(record: Record) -> float | None:
    """When (epoch seconds) a retry or scheduled record may be handled; None if neither.

    A due header that is not a number counts as none: the record is due now, and routing
    parks it (``bad-header``) instead of handling it.
    """
    due = _number(record.header(DUE_MS)) or _number(record.header(DELIVER_AT_MS))
    return None if due is None else due / 1000


def due_in_s(record: Record, clock: WallClock) -> float:
    """Seconds until a retry or scheduled record may be handled (0 when due or neither)."""
    due = due_at(record)
    return 0.0 if due is None else max(0.0, due - clock.now())


class RetryTopics:
    def __init__(
        self, producer: Producer, service: str, instrument: Instrumentation | None
    ) -> None:
        self._producer = producer
        self._service = service
        self._instrument = instrument

    async def schedule(
        self, record: Record, state: RetryState, delay_s: float, attempts: int, error: BaseException
    ) -> asyncio.Future[None]:
        """Send ``record`` to the next level's topic, due ``delay_s`` from now."""
        now = datetime.now(UTC).isoformat(timespec="milliseconds")
        kept = record.headers
        if state.level:  # the previous level's; a first failure keeps every header as is
            kept = [(k, v) for k, v in kept if not k.startswith(HEADER_PREFIX)]
        headers: Headers = [
            *kept,
            (LEVEL, str(state.level + 1).encode()),
            (ATTEMPTS, str(attempts).encode()),
            (FIRST_FAILURE, (state.first_failure or now).encode()),
            (LAST_ERROR, f"{type(error).__qualname__}: {error}"[:MAX_ERROR_CHARS].encode()),
            (DUE_MS, str(math.ceil((current_clock().now() + delay_s) * 1000)).encode()),
            (ORIGIN_TOPIC, state.origin_topic.encode()),
            (ORIGIN_PARTITION, str(state.origin_partition).encode()),
            (ORIGIN_OFFSET, str(state.origin_offset).encode()),
        ]
        if self._instrument is not None:
            self._instrument.inject(headers)
        topic = retry_topic(self._service, state.origin_topic, state.level + 1)
        return await self._producer.send(topic, record.key, record.value, headers)
