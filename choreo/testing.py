"""Unit-test a service's handlers with no broker: ``choreo.testing.TestService``.

The service runs through the real runtime (decoding, retries, dead letters,
commits) on the in-memory transport; only the bytes' journey is simulated.
Handler errors are re-raised by default so a failing handler fails the test
with its own traceback; pass ``raise_errors=False`` to see retries and dead
letters instead.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from types import TracebackType
from typing import TypeVar

from choreo import _headers
from choreo._config import ServiceConfig
from choreo._emitter import Emitter
from choreo._runtime.dead_letters import dlq_topic
from choreo._runtime.runner import ServiceRunner
from choreo._schemas import Catalog, Codec, Event
from choreo._service import Service
from choreo._transport.base import Headers, Producer, Record
from choreo._transport.memory import MemoryTransport

E = TypeVar("E", bound=Event)

__all__ = ["TestService"]


class TestService:
    """``with TestService(svc) as t: t.send(OrderPlaced(...)); t.emitted(StockReserved)``."""

    __test__ = False  # not a pytest test class, despite the name

    def __init__(
        self,
        service: Service,
        *,
        schemas: Path | str = "schemas",
        raise_errors: bool = True,
        settle_timeout_s: float = 10.0,
        config: ServiceConfig | None = None,
    ) -> None:
        self.config = (config or ServiceConfig()).model_copy(
            update={"commit_interval_s": 0.0, "shutdown_grace_s": 5.0}
        )
        self.service = service
        self.catalog = Catalog.load(Path(schemas))
        self.transport = MemoryTransport()
        self.raise_errors = raise_errors
        self.settle_timeout_s = settle_timeout_s
        self._loop = asyncio.Runner()
        self._stop = asyncio.Event()
        self._codec = Codec(self.catalog)
        self._runner: ServiceRunner | None = None
        self._task: asyncio.Task[None] | None = None
        self._producer: Producer | None = None
        self._emitter: Emitter | None = None

    def __enter__(self) -> TestService:
        self._loop.run(self._start())
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            self._loop.run(self._close())
        finally:
            self._loop.close()

    async def _start(self) -> None:
        self._runner = ServiceRunner(
            self.service, self.config, self.transport, self.catalog, raise_errors=self.raise_errors
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
        settle: bool = True,
    ) -> str:
        """Publish ``event`` as another service would, then wait until the service handled it.

        ``settle=False`` only publishes: send several, then call ``settle()``.
        """
        assert self._emitter is not None, "use TestService in a 'with' block"
        emitter = self._emitter

        async def publish() -> str:
            event_id = await emitter.publish(event, correlation_id=correlation_id, key=key)
            if settle:
                await self._settle()
            return event_id

        return self._loop.run(publish())

    def settle(self) -> None:
        """Wait until everything published so far is handled and committed."""
        self._loop.run(self._settle())

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

        self._loop.run(publish())

    async def _settle(self) -> None:
        """Wait until every record is handled and committed, or the service failed."""
        assert self._runner is not None and self._task is not None
        deadline = time.monotonic() + self.settle_timeout_s
        while time.monotonic() < deadline:
            await asyncio.sleep(0.001)
            if self._task.done():
                self._task.result()
                raise RuntimeError(f"{self.service.name} stopped unexpectedly")
            if self.transport.lag(self._runner.group_id) == 0 and self._runner.in_flight() == 0:
                return
        raise TimeoutError(f"{self.service.name} did not settle within {self.settle_timeout_s}s")

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
