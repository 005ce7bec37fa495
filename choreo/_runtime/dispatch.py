"""From a record to a handler call, and what happens when that fails.

The fast path (decode, call a handler that succeeds) is a few attribute
lookups; retries, dead letters and batch flushing live in the slow path so
they cost nothing until something goes wrong.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from choreo import _headers
from choreo._context import Context
from choreo._emitter import Emitter
from choreo._errors import ChoreoError, DecodeError
from choreo._runtime.dead_letters import DeadLetters
from choreo._schemas import Codec, Event
from choreo._service import Handler, Service
from choreo._transport.base import Record

log = logging.getLogger("choreo.runtime")


class HandlerFailed(ChoreoError):
    """A handler error surfaced instead of dead-lettered (``choreo.testing``'s default)."""


class Dispatcher:
    """Everything a partition worker needs to handle one service's records."""

    def __init__(
        self,
        service: Service,
        codec: Codec,
        emitter: Emitter,
        dead_letters: DeadLetters,
        *,
        raise_errors: bool = False,
    ) -> None:
        self.service = service
        self.codec = codec
        self.emitter = emitter
        self.dead_letters = dead_letters
        self.raise_errors = raise_errors
        self.by_type: dict[bytes, Handler] = {
            h.event.event_type.encode(): h for h in service.handlers
        }

    def route(self, record: Record) -> Handler | None:
        """The handler for this record's event type, or None if this service ignores it.

        The ``ce_type`` header decides without decoding; a record without it
        (not produced by choreo) is typed by its schema fingerprint.
        """
        event_type = record.header(_headers.TYPE)
        if event_type is None:
            event_type = self.codec.event_type_of(record.value).encode()
        return self.by_type.get(event_type)

    async def emit_all(self, ctx: Context) -> list[asyncio.Future[None]]:
        correlation = ctx.correlation_id
        causation = ctx.event_id
        return [
            await self.emitter.send(
                event, correlation_id=correlation, causation_id=causation, key=key
            )
            for event, key in ctx.emitted
        ]

    async def park(
        self, record: Record, reason: str, error: BaseException, attempts: int
    ) -> list[asyncio.Future[None]]:
        log.warning(
            "%s: %s[%d]@%d dead-lettered after %d attempt(s): %s: %s",
            self.service.name,
            record.topic,
            record.partition,
            record.offset,
            attempts,
            reason,
            error,
        )
        return [await self.dead_letters.park(record, reason, error, attempts)]

    async def poisoned(self, record: Record, error: DecodeError) -> list[asyncio.Future[None]]:
        if self.raise_errors:
            raise error
        return await self.park(record, error.reason, error, attempts=1)

    async def retry(
        self, handler: Handler, event: Event, record: Record, error: Exception
    ) -> list[asyncio.Future[None]]:
        """Called after the first try failed: back off and try again, then dead-letter."""
        policy = handler.retry
        attempt = 1
        while policy.retryable(error) and attempt < policy.max_attempts:
            await asyncio.sleep(policy.delay_s(attempt))
            attempt += 1
            ctx = Context(self.service.name, record, attempt)
            try:
                result = handler.fn(event, ctx)
                if handler.is_async:
                    await result  # type: ignore[misc]
            except Exception as again:
                error = again
                continue
            return await self.emit_all(ctx)
        if self.raise_errors:
            raise HandlerFailed(
                f"{self.service.name}: {handler.name} failed on {record.topic}[{record.partition}]"
                f"@{record.offset} after {attempt} attempt(s): {error!r}"
            ) from error
        return await self.park(record, "handler-error", error, attempt)

    async def run_batch(
        self, handler: Handler, items: Sequence[tuple[Record, Event]]
    ) -> list[asyncio.Future[None]]:
        """Call a batch handler; if it keeps failing, every record of the batch is parked."""
        events = [event for _, event in items]
        policy = handler.retry
        attempt = 0
        while True:
            attempt += 1
            ctx = Context(self.service.name, None, attempt)
            try:
                result = handler.fn(events, ctx)
                if handler.is_async:
                    await result  # type: ignore[misc]
                return await self.emit_all(ctx)
            except Exception as error:
                if policy.retryable(error) and attempt < policy.max_attempts:
                    await asyncio.sleep(policy.delay_s(attempt))
                    continue
                if self.raise_errors:
                    raise HandlerFailed(
                        f"{self.service.name}: {handler.name} failed: {error!r}"
                    ) from error
                parked: list[asyncio.Future[None]] = []
                for record, _ in items:
                    parked += await self.park(record, "handler-error", error, attempt)
                return parked
