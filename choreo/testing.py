"""Unit-test a service's handlers with no broker: ``choreo.testing.TestService``.

The service runs through the real runtime (decoding, retries, dead letters,
commits) on the in-memory transport; only the bytes' journey is simulated.
Handler errors are re-raised by default so a failing handler fails the test
with its own traceback; pass ``raise_errors=False`` to see retries and dead
letters instead.

Time is the test's: records waiting for a due time (a retry topic's delay, a
scheduled delivery) stay put until ``advance`` moves the service's clock past
it, so a test of a week-long timer or a 10-second retry runs in milliseconds.
"""

from __future__ import annotations

import asyncio
import contextvars
import copy
import math
import time
from collections.abc import Coroutine
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

from choreo import _headers
from choreo._config import ServiceConfig
from choreo._emitter import Emitter
from choreo._runtime.clock import CLOCK, ManualClock
from choreo._runtime.dead_letters import dlq_topic
from choreo._runtime.idempotency import IdempotencyStore, MemoryIdempotency
from choreo._runtime.retry_topics import PREFIX as RETRY_PREFIX
from choreo._runtime.retry_topics import due_at, due_in_s
from choreo._runtime.runner import ServiceRunner
from choreo._schemas import Catalog, Codec, Event
from choreo._schemas.registry_memory import memory_registry
from choreo._service import Service
from choreo._transport.base import Headers, Producer, Record, TopicPartition
from choreo._transport.memory import Backlog, MemoryTransport

E = TypeVar("E", bound=Event)
T = TypeVar("T")

__all__ = ["TestService"]


class TestService:
    """``with TestService(svc) as t: t.send(OrderPlaced(...)); t.emitted(StockReserved)``.

    A service declared with an idempotency store runs with an in-memory one
    here, so a unit test needs no database and leaves no rows behind; pass
    ``idempotency=svc.idempotency`` (or any store) to test against a real one,
    as handlers that write through ``ctx.db`` must.
    """

    __test__ = False  # not a pytest test class, despite the name

    def __init__(
        self,
        service: Service,
        *,
        schemas: Path | str = "schemas",
        raise_errors: bool = True,
        settle_timeout_s: float = 10.0,
        config: ServiceConfig | None = None,
        idempotency: IdempotencyStore | None = None,
    ) -> None:
        self.config = (config or ServiceConfig()).model_copy(
            update={"commit_interval_s": 0.0, "shutdown_grace_s": 5.0}
        )
        self.service = service
        self._tested = _with_store(service, idempotency)
        """What runs: ``service``'s handlers with the test's idempotency store."""
        self.catalog = Catalog.load(Path(schemas))
        self.transport = MemoryTransport()
        self.raise_errors = raise_errors
        self.settle_timeout_s = settle_timeout_s
        self._loop = asyncio.Runner()
        self._clock = ManualClock()
        self._context = contextvars.copy_context()
        self._context.run(CLOCK.set, self._clock)  # the service's tasks inherit it
        self._scheduled = frozenset(n for n, spec in self.catalog.topics.items() if spec.scheduled)
        self._scheduled |= {schedule.topic for schedule in service.schedules}
        self._stop = asyncio.Event()
        self._registry = memory_registry(self.catalog)
        """Registry-format topics get their ids from memory: no server in unit tests."""
        self._codec = Codec(self.catalog, registry=self._registry)
        self._runner: ServiceRunner | None = None
        self._task: asyncio.Task[None] | None = None
        self._producer: Producer | None = None
        self._emitter: Emitter | None = None

    def __enter__(self) -> TestService:
        self._run(self._start())
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            self._run(self._close())
        finally:
            self._loop.close()

    async def _start(self) -> None:
        self._runner = ServiceRunner(
            self._tested,
            self.config,
            self.transport,
            self.catalog,
            raise_errors=self.raise_errors,
            registry=self._registry,
        )
        await self._runner.start()
        self._producer = self.transport.producer("choreo-testing")
        self._emitter = Emitter(self.catalog, self._codec, self._producer, "choreo.testing")
        self._task = asyncio.create_task(self._runner.run(self._stop))

    async def _close(self) -> None:
        self._stop.set()
        if self._task is not None:
            await self._task

    def send(
        self,
        event: Event,
        *,
        correlation_id: str | None = None,
        key: str | None = None,
        at: datetime | None = None,
        settle: bool = True,
    ) -> str:
        """Publish ``event`` as another service would, then wait until the service handled it.

        ``at`` delivers it at that time, as ``ctx.emit(event, at=...)`` does (its topic must
        be scheduled). ``settle=False`` only publishes: send several, then call ``settle()``.
        """
        assert self._emitter is not None, "use TestService in a 'with' block"
        emitter = self._emitter

        async def publish() -> str:
            event_id = _headers.new_event_id()
            record = emitter.prepare(
                event, correlation_id=correlation_id, key=key, event_id=event_id, deliver_at=at
            )
            await (await emitter.send_prepared(record))
            if settle:
                await self._settle()
            return event_id

        return self._run(publish())

    def settle(self) -> None:
        """Wait until everything published so far is handled and committed.

        Records held for a time still to come (a retry's delay, a scheduled
        delivery) count as settled where they wait: ``advance`` makes them due.
        """
        self._run(self._settle())

    def advance(self, by: timedelta) -> None:
        """Let ``by`` pass on the service's clock, handling what falls due on the way.

        Held records are handled in the order they fall due, each at its own
        time, so what they schedule in turn (the next retry level, a follow-up)
        is handled too if it falls due within ``by``. Settles before and after.
        """
        if by < timedelta(0):
            raise ValueError(f"advance takes a duration of zero or more, not {by}")
        self._run(self._advance(by.total_seconds()))

    def now(self) -> datetime:
        """The service's clock: where the last ``advance`` left it (at first, the start)."""
        return datetime.fromtimestamp(self._clock.now(), UTC)

    def send_raw(
        self,
        topic: str,
        value: bytes | None,
        *,
        key: bytes | None = None,
        headers: Headers | None = None,
        settle: bool = True,
    ) -> None:
        """Publish arbitrary bytes (poison messages, foreign producers), then settle.

        ``settle=False`` only publishes (several records for one batch, say).
        """
        assert self._producer is not None, "use TestService in a 'with' block"
        producer = self._producer

        async def publish() -> None:
            await (await producer.send(topic, key, value, headers or []))
            if settle:
                await self._settle()

        self._run(publish())

    def _run(self, work: Coroutine[Any, Any, T]) -> T:
        """Run ``work`` on the test's loop, in the context that holds the service's clock."""
        return self._loop.run(work, context=self._context)

    async def _advance(self, seconds: float) -> None:
        await self._settle()
        # From real time if the clock is behind it, so that due times handlers computed
        # from datetime.now() come when the test expects; rounded up as due times are.
        start = max(self._clock.now(), time.time())
        until = math.ceil((start + seconds) * 1000) / 1000
        while (due := self._next_due()) is not None and due <= until:
            self._clock.advance_to(due)
            await self._settle()
        self._clock.advance_to(until)
        await self._settle()

    async def _settle(self) -> None:
        """Wait until every record is handled and committed, or the service failed."""
        assert self._runner is not None and self._task is not None
        group = self._runner.group_id
        busy: list[TopicPartition] = []
        deadline = time.monotonic() + self.settle_timeout_s
        while time.monotonic() < deadline:
            if self._task.done():
                self._task.result()
                raise RuntimeError(f"{self.service.name} stopped unexpectedly")
            busy = [tp for tp, b in self.transport.backlog(group).items() if not self._idle(tp, b)]
            if not busy:
                return
            self.transport.end_polls(group)  # the runner commits what its workers finished
            await asyncio.sleep(0.001)
        raise TimeoutError(
            f"{self.service.name} did not settle within {self.settle_timeout_s}s: records of "
            + ", ".join(f"{tp.topic}[{tp.partition}]" for tp in busy)
            + " are neither handled and committed nor held for a time still to come"
        )

    def _idle(self, tp: TopicPartition, backlog: Backlog) -> bool:
        """Whether nothing of ``backlog`` (uncommitted records) can be handled before
        the clock moves: none at all, or the first one is held for its due time and so is
        everything behind it; with key lanes, records of other keys are handled meanwhile."""
        if not backlog.records:
            return True
        held = self._held(tp.topic, backlog.records)
        if held[0] is False:
            return False
        if not self.config.key_concurrency:
            return True  # the partition's records are handled in order: all wait behind it
        assert self._runner is not None
        worker = self._runner.workers.get(tp)
        return (  # all were fetched, and those still queued are exactly the held ones
            worker is not None
            and backlog.fetched == len(backlog.records)
            and worker.queued == sum(held)
        )

    def _held(self, topic: str, records: list[Record]) -> list[bool]:
        """Which of a partition's uncommitted ``records`` wait for the clock: due later
        themselves, behind one of their key that is (a key lane is in order), or behind
        a key with no free lane (no lane opens for any key after it, as in the worker)."""
        if not self._holds(topic):
            return [False] * len(records)
        lanes = max(1, self.config.key_concurrency)
        waiting: set[bytes | None] = set()
        held: list[bool] = []
        for record in records:
            if record.key not in waiting and len(waiting) >= lanes:
                return held + [True] * (len(records) - len(held))
            if record.key in waiting or due_in_s(record, self._clock) > 0:
                waiting.add(record.key)
                held.append(True)
            else:
                held.append(False)
        return held

    def _holds(self, topic: str) -> bool:
        """Whether the service's workers hold records of ``topic`` until they are due."""
        return topic.startswith(RETRY_PREFIX) or topic in self._scheduled

    def _next_due(self) -> float | None:
        """The earliest due time (epoch seconds) of a record held for a time still to come."""
        assert self._runner is not None
        now = self._clock.now()
        dues = [
            due
            for tp, backlog in self.transport.backlog(self._runner.group_id).items()
            if self._holds(tp.topic)
            for record in backlog.records
            if (due := due_at(record)) is not None and due > now
        ]
        return min(dues, default=None)

    def records(self, topic: str) -> list[Record]:
        return self.transport.records(topic)

    def emitted(self, event_type: type[E]) -> list[E]:
        """The events of this type the service emitted, in the order they were produced."""
        topic = self.catalog.topic_of(event_type.event_type).name
        source = self.service.name.encode()
        wanted = event_type.event_type.encode()
        return [
            self._codec.decode(record.value, event_type)
            for record in self.transport.records(topic)
            if record.header(_headers.SOURCE) == source and record.header(_headers.TYPE) == wanted
        ]

    def dead_letters(self, topic: str) -> list[Record]:
        """What the service parked from ``topic``, with the ``choreo_dlq_*`` headers."""
        return self.transport.records(dlq_topic(self.service.name, topic))


def _with_store(service: Service, store: IdempotencyStore | None) -> Service:
    """The service as the test runs it: its handlers, with ``store`` or an in-memory one."""
    if service.idempotency is None and store is None:
        return service
    tested = copy.copy(service)  # the handlers are shared; only the store differs
    tested.idempotency = store if store is not None else MemoryIdempotency()
    return tested
