"""Publishing events from outside a handler (an HTTP ingress, a script, a test)."""

from __future__ import annotations

from pathlib import Path
from types import TracebackType

from choreo._config import ServiceConfig
from choreo._emitter import Emitter
from choreo._runtime.instrument import Instrumentation
from choreo._schemas import Catalog, Codec, Event
from choreo._transport.base import Producer
from choreo._transport.registry import make_transport


class Publisher:
    """``async with Publisher(source="web") as pub: await pub.publish(event)``.

    Events look exactly like those emitted by handlers (same encoding, key and
    headers); an event published here starts a new correlation unless one is
    given.
    """

    def __init__(
        self,
        source: str,
        config: ServiceConfig | None = None,
        catalog: Catalog | None = None,
        instrument: Instrumentation | None = None,
    ) -> None:
        self.instrument = instrument
        self.config = config or ServiceConfig()
        self.catalog = catalog or Catalog.load(Path(self.config.schemas_dir))
        self.source = source
        self._producer: Producer | None = None
        self._emitter: Emitter | None = None

    async def __aenter__(self) -> Publisher:
        transport = make_transport(self.config.transport, self.config.kafka)
        self._producer = transport.producer(f"choreo-publisher-{self.source}")
        codec = Codec(self.catalog, max_bytes=self.config.max_record_bytes)
        self._emitter = Emitter(self.catalog, codec, self._producer, self.source, self.instrument)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._producer is not None:
            await self._producer.flush()
            await self._producer.close()

    @property
    def emitter(self) -> Emitter:
        if self._emitter is None:
            raise RuntimeError("use Publisher in 'async with'")
        return self._emitter

    async def publish(
        self, event: Event, *, correlation_id: str | None = None, key: str | None = None
    ) -> str:
        """Send one event and wait until the broker has it; returns its event id."""
        return await self.emitter.publish(event, correlation_id=correlation_id, key=key)
