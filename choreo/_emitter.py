"""Encode events and hand them to a producer, with topic, key and headers derived once per type."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from choreo import _headers
from choreo._errors import TopologyError
from choreo._outbound import Outbound
from choreo._runtime.instrument import Instrumentation
from choreo._schemas import Catalog, Codec, Event
from choreo._transport.base import Producer


@dataclass(frozen=True)
class _Route:
    topic: str
    key_field: str
    event_type: bytes
    scheduled: bool


class EventEncoder:
    """Turns events into records the way every choreo message looks on the wire.

    Shared by direct produces (``Emitter``) and the transactional outbox, so
    both write the same bytes. Routes are resolved on first use per event
    class and cached, so encoding costs one dict lookup plus Avro.
    """

    def __init__(
        self,
        catalog: Catalog,
        codec: Codec,
        source: str,
        instrument: Instrumentation | None = None,
    ) -> None:
        self._instrument = instrument
        self._catalog = catalog
        self._codec = codec
        self._source = source.encode()
        self._routes: dict[type[Event], _Route] = {}
        self.scheduled_topics = frozenset(n for n, t in catalog.topics.items() if t.scheduled)
        """Topics whose records may carry a delivery time, which their consumers wait for."""

    def _route(self, cls: type[Event]) -> _Route:
        route = self._routes.get(cls)
        if route is None:
            spec = self._catalog.topic_of(cls.event_type)
            route = _Route(spec.name, spec.key, cls.event_type.encode(), spec.scheduled)
            self._routes[cls] = route
        return route

    def topic_of(self, cls: type[Event]) -> str:
        return self._route(cls).topic

    def prepare(
        self,
        event: Event,
        *,
        correlation_id: str | None = None,
        causation_id: str | None = None,
        key: str | None = None,
        event_id: str | None = None,
        deliver_at: datetime | None = None,
    ) -> Outbound:
        """The record an event becomes: topic, key, Avro bytes and headers.

        An event that starts a transaction (no ``correlation_id``: handlers pass
        the incoming event's) is correlated by its Kafka key, the catalog's key
        field: the business id, so ``choreo saga show <order id>`` finds it, and
        the key the saga tracker's co-partitioning already relies on.
        """
        route = self._route(type(event))
        event_id = event_id or _headers.new_event_id()
        key_value = key if key is not None else str(getattr(event, route.key_field))
        headers = _headers.event_headers(
            route.event_type, self._source, event_id, correlation_id or key_value, causation_id
        )
        if deliver_at is not None:
            headers.append((_headers.DELIVER_AT_MS, _deliver_at_ms(route, deliver_at)))
        if self._instrument is not None:
            self._instrument.inject(headers)
        return Outbound(route.topic, key_value.encode(), self._codec.encode(event), headers)


def _deliver_at_ms(route: _Route, at: datetime) -> bytes:
    if not route.scheduled:
        raise TopologyError(
            f"{route.event_type.decode()} goes to topic '{route.topic}', which is not scheduled: "
            "add scheduled = true to it in catalog.toml (its consumers then hold each record "
            "until its time)"
        )
    if at.tzinfo is None:
        raise ValueError(f"the delivery time {at} has no time zone; use an aware datetime")
    return str(math.ceil(at.timestamp() * 1000)).encode()


class Emitter(EventEncoder):
    """An encoder wired to a producer: what handlers' ``ctx.emit`` goes through."""

    def __init__(
        self,
        catalog: Catalog,
        codec: Codec,
        producer: Producer,
        source: str,
        instrument: Instrumentation | None = None,
    ) -> None:
        super().__init__(catalog, codec, source, instrument)
        self._producer = producer

    async def send_prepared(self, record: Outbound) -> asyncio.Future[None]:
        return await self._producer.send(record.topic, record.key, record.value, record.headers)

    async def send_all(self, records: Sequence[Outbound]) -> list[asyncio.Future[None]]:
        """Enqueue ``records`` in order, their futures in the same order: a handler's outputs
        in one coroutine, not one per output (the relay's hot path)."""
        send = self._producer.send
        return [await send(r.topic, r.key, r.value, r.headers) for r in records]

    async def send(
        self,
        event: Event,
        *,
        correlation_id: str | None = None,
        causation_id: str | None = None,
        key: str | None = None,
        event_id: str | None = None,
    ) -> asyncio.Future[None]:
        """Enqueue one event; the future resolves when the broker has it."""
        record = self.prepare(
            event,
            correlation_id=correlation_id,
            causation_id=causation_id,
            key=key,
            event_id=event_id,
        )
        return await self.send_prepared(record)

    async def publish(self, event: Event, **kwargs: str | None) -> str:
        """Send and wait for the broker; returns the event id."""
        event_id = kwargs.pop("event_id", None) or _headers.new_event_id()
        await (await self.send(event, event_id=event_id, **kwargs))
        return event_id
