"""Publishing events from outside a handler (an HTTP ingress, a script, a test)."""

from __future__ import annotations

from pathlib import Path
from types import TracebackType

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider

from choreo._config import ServiceConfig, load_config
from choreo._emitter import Emitter
from choreo._observability import build_instrumentation, tracer_provider_from_env
from choreo._runtime.instrument import Instrumentation
from choreo._schemas import Catalog, Codec, Event
from choreo._schemas.registry_setup import check_registry, registry_for
from choreo._transport.base import Producer, Transport
from choreo._transport.registry import make_transport


class Publisher:
    """``async with Publisher(source="web") as pub: await pub.publish(event)``.

    Events look exactly like those emitted by handlers (same encoding, key and
    headers); an event published here is correlated by its key (the catalog's
    key field: the business id, which is then the saga id) unless a
    ``correlation_id`` is given. Settings come from the ``CHOREO_*``
    environment, as for ``choreo run``, unless ``config`` is given: a publisher
    in a container must reach the broker its services use, not a default
    address.

    Tracing follows the process's OpenTelemetry set-up: an SDK tracer provider
    the application installed globally is used as it is; otherwise the
    ``OTEL_*`` variables decide, as for ``choreo run``. Each publish is a
    producer span that is a child of the caller's current span (a web
    request's), so the whole business transaction is one trace.
    ``tracer_provider`` overrides both.
    """

    def __init__(
        self,
        source: str,
        config: ServiceConfig | None = None,
        catalog: Catalog | None = None,
        instrument: Instrumentation | None = None,
        *,
        tracer_provider: TracerProvider | None = None,
    ) -> None:
        self.config = config or load_config()
        self.catalog = catalog or Catalog.load(Path(self.config.schemas_dir))
        self.source = source
        self._owned_provider: TracerProvider | None = None
        if instrument is None:
            provider = tracer_provider or _installed_provider()
            if provider is None:
                provider = self._owned_provider = tracer_provider_from_env(source)
            instrument = build_instrumentation(source, tracer_provider=provider)
        self.instrument = instrument
        self._transport: Transport | None = None
        self._producer: Producer | None = None
        self._emitter: Emitter | None = None
        self._ready_topics: set[str] = set()

    async def __aenter__(self) -> Publisher:
        self._transport = make_transport(self.config.transport, self.config.kafka)
        self._producer = self._transport.producer(f"choreo-publisher-{self.source}")
        registry = registry_for(self.config, self.catalog)
        await check_registry(registry)
        codec = Codec(self.catalog, max_bytes=self.config.max_record_bytes, registry=registry)
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
        if self._owned_provider is not None:
            self._owned_provider.shutdown()

    @property
    def emitter(self) -> Emitter:
        if self._emitter is None:
            raise RuntimeError("use Publisher in 'async with'")
        return self._emitter

    async def publish(
        self, event: Event, *, correlation_id: str | None = None, key: str | None = None
    ) -> str:
        """Send one event and wait until the broker has it; returns its event id.

        The first publish to a topic creates it as ``catalog.toml`` says (when
        ``create_topics`` is on), so publishing before any service has started
        never leaves a broker-made topic with the wrong partition count.
        """
        await self._ensure_topic(self.emitter.topic_of(type(event)))
        return await self.emitter.publish(event, correlation_id=correlation_id, key=key)

    async def _ensure_topic(self, topic: str) -> None:
        if topic in self._ready_topics or not self.config.create_topics:
            return
        if self._transport is None:
            raise RuntimeError("use Publisher in 'async with'")
        await self._transport.ensure_topics([self.catalog.topics[topic].topic_config()])
        self._ready_topics.add(topic)


def _installed_provider() -> TracerProvider | None:
    """The SDK provider the application set globally, if any (not OpenTelemetry's no-op proxy)."""
    provider = trace.get_tracer_provider()
    return provider if isinstance(provider, TracerProvider) else None
