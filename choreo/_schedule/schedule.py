"""A durable schedule: its timer is a Kafka record, handled like any other.

Design (why it survives kill -9 anywhere, with any number of instances):

- A schedule has its own one-partition topic, read by the service's consumer
  group, so exactly one instance owns it at a time, and its records are read
  in order.
- The pending tick is an **alarm** record due at the tick's time. The owner's
  worker holds it until then (the scheduled-delivery wait: no polling, a stop
  does not wait for it). Handling the alarm writes two records to the same
  partition: the **tick** (due now, run by the user's handler with the
  service's retries, dead letters, tracing and idempotency) and the **next
  alarm**. Like any handler's outputs they are acknowledged before the
  alarm's offset is committed, so a crash at any point leaves an alarm
  pending: the chain never breaks. A tick whose handler fails for good is
  dead-lettered; the alarm after it was already written, so the schedule goes on.
- A crash between writing and committing makes the alarm run again: its
  outputs are written twice, with the same ids. The owner skips an alarm for
  a time it already armed past, so a duplicated chain collapses back into one
  as soon as it is read, and an idempotency store skips the second tick by
  its ``ce_id`` (``<service>.<schedule>@<time>``). Without a store a tick may
  run twice in that window, as any handler's event may (at-least-once).
- Who starts the chain: every instance, at start, writes an alarm for the
  next tick after now. Its time and id are the ones the live chain would
  reach anyway, so on a running chain it is a duplicate (skipped); on a new
  topic (or one emptied by retention) it starts the chain.
- Catch-up: an alarm read late (nothing ran at its time) runs only the
  latest tick that fell due, once, with ``Tick.skipped`` counting the ones
  before it, and arms the next tick after now. The handler decides what a
  missed night's work means; it never gets a burst of stale ticks.
"""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from choreo._outbound import Outbound
from choreo._runtime.clock import current_clock
from choreo._schedule.cadence import Cadence
from choreo._schedule.records import (
    Alarm,
    Tick,
    alarm_record,
    decode,
    schedule_topic,
    tick_record,
)
from choreo._transport.base import Record, TopicConfig

if TYPE_CHECKING:
    from choreo._context import Context

log = logging.getLogger("choreo.schedule")

RETENTION_MS = 30 * 24 * 3600 * 1000
"""A service down longer than this may find its pending alarm gone: it starts afresh."""


class Schedule:
    """One ``Service.every`` declaration: its cadence, its topic and its alarm chain."""

    def __init__(self, service: str, name: str, cadence: Cadence) -> None:
        self.service = service
        self.name = name
        self.cadence = cadence
        self.topic = schedule_topic(service, name)
        self._armed_ms = -1
        """The latest tick time this process armed: an alarm at or before it is a duplicate."""

    def topic_config(self) -> TopicConfig:
        return TopicConfig(self.topic, 1, RETENTION_MS)

    def seed(self, now_s: float) -> Outbound:
        """The alarm every instance proposes at start: the next tick after ``now_s``.

        Also forgets what this process armed before: a new run (a test's fresh
        clock, say) reads its topic from the committed offset on.
        """
        self._armed_ms = -1
        return alarm_record(
            self.topic, self.service, self.name, self.cadence.after(int(now_s * 1000))
        )

    def ring(self, alarm: Alarm, now_s: float) -> list[Outbound]:
        """What a due alarm writes: the tick to run and the next alarm; nothing if a duplicate."""
        if alarm.at_ms <= self._armed_ms:
            return []
        now_ms = int(now_s * 1000)
        at_ms = max(alarm.at_ms, self.cadence.latest(now_ms))
        skipped = self.cadence.count(alarm.at_ms, at_ms)
        if skipped:
            log.warning(
                "%s: schedule %s (%s) missed %d tick(s) from %s on (no instance handled them "
                "in time); running the latest, at %s",
                self.service,
                self.name,
                self.cadence,
                skipped,
                self.cadence.local(alarm.at_ms).isoformat(),
                self.cadence.local(at_ms).isoformat(),
            )
        following = self.cadence.after(max(at_ms, now_ms))
        self._armed_ms = max(self._armed_ms, alarm.at_ms, following - 1)
        return [
            tick_record(self.topic, self.service, self.name, at_ms, skipped),
            alarm_record(self.topic, self.service, self.name, following),
        ]

    def decode(self, record: Record) -> Alarm | Tick:
        return decode(record, self.cadence.local)

    def handler(
        self, fn: Callable[[Tick, Context], Awaitable[None] | None]
    ) -> Callable[[Alarm | Tick, Context], Awaitable[None]]:
        """The topic handler: an alarm arms the chain, a tick runs ``fn``.

        An alarm's records are handed over already encoded (``ctx.prepared``),
        so they are sent, stored by an idempotency store and re-sent exactly as
        a handler's emits are.
        """
        is_async = inspect.iscoroutinefunction(fn)

        @functools.wraps(fn)
        async def handle(item: Alarm | Tick, ctx: Context) -> None:
            if isinstance(item, Alarm):
                ctx.prepared = self.ring(item, current_clock().now())
                return
            result: Any = fn(item, ctx)
            if is_async:
                await result

        return handle
