"""The two records of a schedule's topic, ``choreo.schedule.<service>.<schedule>``.

An **alarm** says "tick at T": it carries ``choreo_deliver_at_ms`` = T, so the
partition's worker holds it until T like any scheduled delivery. A **tick**
is what the handler runs for, due at once. Both are keyed by the schedule's
name (its topic has one partition), carry CloudEvents headers like every
choreo record, and a small JSON body, so ``choreo dlq show`` reads a parked
tick as text. A tick's ``ce_id`` is ``<service>.<schedule>@<time>``: the same
on every instance, which is what lets an idempotency store recognise a tick
written twice.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from choreo import _headers
from choreo._errors import DecodeError
from choreo._outbound import Outbound
from choreo._transport.base import Record

PREFIX = "choreo.schedule."
ALARM = b"choreo.schedule.Alarm"
TICK = b"choreo.schedule.Tick"


def schedule_topic(service: str, schedule: str) -> str:
    return f"{PREFIX}{service}.{schedule}"


@dataclass(frozen=True)
class Tick:
    """What a schedule's handler gets: which tick this is, and what was missed before it.

    ``at`` is the tick's time in the schedule's zone (UTC for intervals), not
    when the handler runs. ``skipped`` counts the ticks that fell due while no
    instance ran and were not run (the catch-up policy runs only the latest).
    """

    schedule: str
    at: datetime
    skipped: int = 0


@dataclass(frozen=True)
class Alarm:
    """The pending tick of a schedule (internal: the handler never sees one)."""

    at_ms: int


def tick_id(service: str, schedule: str, at_ms: int) -> str:
    """The same on every instance: UTC, to the millisecond."""
    at = datetime.fromtimestamp(at_ms / 1000, UTC).isoformat(timespec="milliseconds")
    return f"{service}.{schedule}@{at}"


def alarm_record(topic: str, service: str, schedule: str, at_ms: int) -> Outbound:
    """An alarm has no ``ce_id`` on purpose: an idempotency store then keys it by its
    offset, so a copy written twice by a crash reaches the schedule, which knows it by its
    time, instead of passing for a redelivery that re-sends the first copy's records."""
    headers = _headers.event_headers(ALARM, service.encode(), "", "", None)
    headers = [(name, value) for name, value in headers if name not in _UNIDENTIFIED]
    headers.append((_headers.DELIVER_AT_MS, str(at_ms).encode()))
    return Outbound(topic, schedule.encode(), _body(schedule, at_ms, 0), headers)


_UNIDENTIFIED = frozenset({_headers.ID, _headers.CORRELATION})


def tick_record(topic: str, service: str, schedule: str, at_ms: int, skipped: int) -> Outbound:
    event_id = tick_id(service, schedule, at_ms)
    headers = _headers.event_headers(TICK, service.encode(), event_id, event_id, None)
    return Outbound(topic, schedule.encode(), _body(schedule, at_ms, skipped), headers)


def _body(schedule: str, at_ms: int, skipped: int) -> bytes:
    return json.dumps({"schedule": schedule, "at_ms": at_ms, "skipped": skipped}).encode()


def decode(record: Record, local: Callable[[int], datetime]) -> Alarm | Tick:
    """An alarm or a tick (its time made ``local``); anything else here is parked, saying why.

    Any bytes can arrive (a foreign producer, a replay to the wrong topic), so
    every failure is a ``DecodeError`` naming the record, never another exception.
    """
    where = f"{record.topic}[{record.partition}]@{record.offset}"
    kind = record.header(_headers.TYPE)
    if kind not in (ALARM, TICK):
        raise DecodeError("unknown-type", f"{where}: ce_type {kind!r} is not a schedule record")
    try:
        body = json.loads(record.value or b"")
        at_ms, skipped, schedule = body["at_ms"], body["skipped"], body["schedule"]
        if not (isinstance(at_ms, int) and isinstance(skipped, int) and isinstance(schedule, str)):
            raise TypeError("at_ms and skipped must be integers, schedule a string")
        at = local(at_ms)
    except (ValueError, KeyError, TypeError, OverflowError, OSError) as error:
        raise DecodeError("invalid", f"{where}: not a schedule record body: {error}") from None
    return Alarm(at_ms) if kind == ALARM else Tick(schedule, at, skipped)
