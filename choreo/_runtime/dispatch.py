"""From a record to a handler call, and what happens when that fails.

The fast path (decode, call a handler that succeeds) is a few attribute
lookups; retries, dead letters and batch flushing live in the slow path so
they cost nothing until something goes wrong.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

from choreo._batch import REJECTED, BatchContext
from choreo._context import Context
from choreo._emitter import Emitter
from choreo._errors import ChoreoError, DecodeError
from choreo._outbound import Outbound
from choreo._runtime.admission import check_headers
from choreo._runtime.dead_letters import DeadLetterRefused, DeadLetters, fits
from choreo._runtime.idempotency import IdempotencyStore
from choreo._runtime.instrument import Instrumentation, Scope
from choreo._runtime.retry_topics import HEADERS_BYTES as RETRY_HEADERS_BYTES
from choreo._runtime.retry_topics import PREFIX as RETRY_PREFIX
from choreo._runtime.retry_topics import RetryTopics, retry_state
from choreo._schemas import Codec, Event
from choreo._service import Handler, Service
from choreo._transport.base import Record

log = logging.getLogger("choreo.runtime")


class HandlerFailed(ChoreoError):
    """A handler error surfaced instead of dead-lettered (``choreo.testing``'s default)."""


Decode = Callable[[Record], Any]
Route = tuple[Handler, Decode]


class Dispatcher:
    """Everything a partition worker needs to handle one service's records."""

    def __init__(
        self,
        service: Service,
        codec: Codec,
        emitter: Emitter,
        dead_letters: DeadLetters,
        retry_topics: RetryTopics,
        *,
        raise_errors: bool = False,
        instrument: Instrumentation | None = None,
        group: str | None = None,
    ) -> None:
        self.group = group or service.name
        self.service = service
        self.codec = codec
        self.emitter = emitter
        self.dead_letters = dead_letters
        self.retry_topics = retry_topics
        self.raise_errors = raise_errors
        self.instrument = instrument
        self.scheduled_topics = emitter.scheduled_topics | {s.topic for s in service.schedules}
        """Topics whose records wait for a due time: scheduled ones, schedules' alarms."""
        self._claims = asyncio.Lock()
        """One store connection: one claim at a time across all idempotent handlers."""
        catalog = codec.catalog
        self.carriers = {
            event_type: spec.name for spec in catalog.topics.values() for event_type in spec.events
        }
        """Event type → the one topic that carries it."""
        self.by_type: dict[bytes, Route] = {}
        self.by_topic: dict[str, Route] = {}
        for handler in service.handlers:
            if service.idempotency is not None and handler.batching is None:
                handler = self._once(handler, service.idempotency)
            if handler.event is not None:
                self.by_type[handler.event.event_type.encode()] = (
                    handler,
                    _value_decoder(codec, handler.event),
                )
            elif handler.topic is not None and handler.decoder is not None:
                self.by_topic[handler.topic] = (handler, _topic_decoder(handler.decoder, codec))

    def route(self, record: Record) -> Route | None:
        """The handler (and its decoder) for a record, or None if this service skips it.

        Topic handlers match on the topic; otherwise the ``ce_type`` header
        decides without decoding, and a record without it (not produced by
        choreo) is typed by its schema fingerprint. Skipping is only for a type
        the topic carries and this service does not handle; any other record
        without a handler raises :class:`DecodeError` with its own reason.
        """
        event_type = check_headers(record)
        if self.by_topic:
            found = self.by_topic.get(record.topic)
            if found is None and record.topic.startswith(RETRY_PREFIX):
                found = self.by_topic.get(retry_state(record).origin_topic)
            if found is not None:
                return found
        if event_type is None:
            event_type = self.codec.event_type_of(record.value).encode()
        found = self.by_type.get(event_type)
        if found is None:
            self._skip(record, event_type.decode())  # UTF-8: checked above or from the catalog
        return found

    def _skip(self, record: Record, event_type: str) -> None:
        """Count a record this service does not handle, or raise if it has no place here."""
        origin = retry_state(record).origin_topic
        carrier = self.carriers.get(event_type)
        if carrier is None:
            raise DecodeError(
                "unknown-type", f"{origin}: no topic in the catalog carries ce_type {event_type!r}"
            )
        if carrier != origin:
            raise DecodeError(
                "wrong-topic", f"{origin}: ce_type {event_type} belongs on topic {carrier}"
            )
        if self.instrument is not None:
            self.instrument.skipped(record, event_type)

    def scope(self, record: Record, handler: Handler | None) -> Scope | None:
        return None if self.instrument is None else self.instrument.consume(record, handler)

    def prepare_all(self, ctx: Context) -> list[Outbound]:
        correlation = ctx.correlation_id
        causation = ctx.event_id
        prepare = self.emitter.prepare
        return [
            prepare(
                event, correlation_id=correlation, causation_id=causation, key=key, deliver_at=at
            )
            for event, key, at in ctx.emitted
        ]

    async def emit_all(self, ctx: Context) -> list[asyncio.Future[None]]:
        """Send what the handler emitted (encoded already, unless a batch handler's)."""
        prepared = self.prepare_all(ctx) if ctx.prepared is None else ctx.prepared
        return await self.emitter.send_all(prepared)

    def _once(self, handler: Handler, store: IdempotencyStore) -> Handler:
        """The handler behind a claim in the idempotency store (see ``idempotency.py``).

        Claims are serialized per process: the store has one connection, and
        an async handler could otherwise interleave two transactions on it.
        """
        fn, is_async, group = handler.fn, handler.is_async, self.group
        lock = self._claims

        async def guarded(event: Any, ctx: Context) -> None:
            record = ctx.record
            assert record is not None
            key = ctx.event_id or f"{record.topic}/{record.partition}/{record.offset}"
            async with lock:
                with store.claim(group, key) as claim:
                    if claim.outputs is not None:
                        ctx.prepared = claim.outputs  # a redelivery: re-send, do not re-run
                        return
                    ctx.db = claim.connection
                    result = fn(event, ctx)
                    if is_async:
                        await result  # type: ignore[misc]
                    if ctx.prepared is None:  # a schedule's alarm hands its records encoded
                        ctx.prepared = self.prepare_all(ctx)
                    claim.recorded = ctx.prepared

        return replace(handler, fn=guarded, is_async=True)

    async def park(
        self, record: Record, reason: str, error: BaseException, attempts: int
    ) -> list[asyncio.Future[None]]:
        """Send the dead letter; it is logged once the broker acknowledged it, or failed."""
        where = f"{self.service.name}: {record.topic}[{record.partition}]@{record.offset}"
        written = await self.dead_letters.park(record, reason, error, attempts)
        parked: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        def settled(delivery: asyncio.Future[None]) -> None:
            if delivery.cancelled() or delivery.exception() is not None:
                cause = "cancelled" if delivery.cancelled() else delivery.exception()
                log.error("%s: dead letter NOT written (%s: %s): %s", where, reason, error, cause)
                parked.set_exception(
                    DeadLetterRefused(f"{where}: the dead letter ({reason}) was refused: {cause}")
                )
                return
            log.warning(
                "%s dead-lettered after %d attempt(s): %s: %s", where, attempts, reason, error
            )
            parked.set_result(None)

        written.add_done_callback(settled)
        return [parked]

    async def poisoned(self, record: Record, error: DecodeError) -> list[asyncio.Future[None]]:
        if self.raise_errors:
            raise error
        scope = self.scope(record, None)
        if scope is not None:
            scope.parked(error.reason, error)
        try:
            return await self.park(record, error.reason, error, attempts=1)
        finally:
            if scope is not None:
                scope.end(error)

    async def retry(
        self, handler: Handler, event: Any, record: Record, error: Exception, scope: Scope | None
    ) -> list[asyncio.Future[None]]:
        """Called after a try failed: back off and try again, then a retry topic, then the DLQ.

        A record from a retry topic gets no in-place tries: it had them. Ends
        ``scope`` whatever happens.
        """
        policy = handler.retry
        state = retry_state(record)
        attempt = state.attempts + 1
        last_in_place = attempt if state.level else policy.max_attempts
        try:
            while policy.retryable(error) and attempt < last_in_place:
                if scope is not None:
                    scope.retrying(attempt, error)
                await asyncio.sleep(policy.delay_s(attempt))
                attempt += 1
                ctx = Context(self.service.name, record, attempt)
                for guard in handler.guards:
                    await guard.admit()  # an open breaker waits here instead of burning tries
                try:
                    result = handler.fn(event, ctx)
                    if handler.is_async:
                        await result  # type: ignore[misc]
                    if ctx.emitted and ctx.prepared is None:
                        ctx.prepared = self.prepare_all(ctx)
                except Exception as again:
                    for guard in handler.guards:
                        guard.record(False)
                    error = again
                    continue
                for guard in handler.guards:
                    guard.record(True)
                deliveries = await self.emit_all(ctx)
                if scope is not None:
                    scope.end(None)
                    scope = None
                return deliveries
            if self.raise_errors:
                raise HandlerFailed(
                    f"{self.service.name}: {handler.name} failed on {record.topic}"
                    f"[{record.partition}]@{record.offset} after {attempt} attempt(s): {error!r}"
                ) from error
            # A record too big to be written whole again skips the retry topics: its dead
            # letter (bounded) is what can still be written.
            delayed = policy.retryable(error) and state.level < len(policy.delays_s)
            if delayed and fits(record, RETRY_HEADERS_BYTES):
                if scope is not None:
                    scope.retrying(attempt, error)
                    scope.delayed(state.level + 1, error)
                delay = policy.delays_s[state.level]
                return [await self.retry_topics.schedule(record, state, delay, attempt, error)]
            if scope is not None:
                scope.parked("handler-error", error)
            return await self.park(record, "handler-error", error, attempt)
        finally:
            if scope is not None:
                scope.end(error)

    async def run_batch(
        self, handler: Handler, items: Sequence[tuple[Record, Any]]
    ) -> list[asyncio.Future[None]]:
        """Call a batch handler; if it keeps failing, every record of the batch is parked."""
        events = [event for _, event in items]
        scope = (
            None
            if self.instrument is None
            else self.instrument.consume_batch([record for record, _ in items], handler)
        )
        policy = handler.retry
        attempt = 0
        failure: BaseException | None = None
        try:
            while True:
                attempt += 1
                ctx = BatchContext(self.service.name, items, attempt)
                try:
                    result = handler.fn(events, ctx)
                    if handler.is_async:
                        await result  # type: ignore[misc]
                    deliveries = await self.emit_all(ctx)
                    for record, rejection in ctx.rejected:
                        deliveries += await self.park(record, REJECTED, rejection, attempt)
                    return deliveries
                except Exception as error:
                    failure = error
                    if policy.retryable(error) and attempt < policy.max_attempts:
                        if scope is not None:
                            scope.retrying(attempt, error)
                        await asyncio.sleep(policy.delay_s(attempt))
                        continue
                    if self.raise_errors:
                        raise HandlerFailed(
                            f"{self.service.name}: {handler.name} failed: {error!r}"
                        ) from error
                    if scope is not None:
                        scope.parked("handler-error", error)
                    parked: list[asyncio.Future[None]] = []
                    for record, _ in items:
                        parked += await self.park(record, "handler-error", error, attempt)
                    return parked
        finally:
            if scope is not None:
                scope.end(failure)


def _topic_decoder(decoder: Decode, codec: Codec) -> Decode:
    """A topic decoder that reads registry-framed values (``choreo.cdc``'s) gets the service's
    registry here: it was made when its handler was declared, before any config was read."""
    bind = getattr(decoder, "with_registry", None)
    return decoder if bind is None else bind(codec.registry)


def _value_decoder(codec: Codec, model: type[Event]) -> Decode:
    """Bind the codec and model once, so the hot path makes a single call per record."""
    decode = codec.decoder(model)

    def decode_record(record: Record) -> Event:
        return decode(record.value)

    return decode_record
