"""One task per assigned partition: records are handled in offset order.

Partitions run concurrently with each other; within one, a record is started
only after the previous one finished, which is what keeps per-key order.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from typing import Any

from choreo._context import Context
from choreo._errors import DecodeError
from choreo._runtime.dispatch import Dispatcher
from choreo._runtime.progress import Progress
from choreo._runtime.retry_topics import PREFIX as RETRY_PREFIX
from choreo._runtime.retry_topics import due_in_s, retry_state
from choreo._service import Handler
from choreo._transport.base import Record, TopicPartition

YIELD_EVERY_S = 0.05
"""Sync handlers never await; give the event loop a turn at least this often."""


class PartitionWorker:
    def __init__(self, tp: TopicPartition, dispatcher: Dispatcher) -> None:
        self.tp = tp
        self.dispatcher = dispatcher
        self.progress = Progress()
        self.queued = 0
        """Records fed but not yet handled (for backpressure)."""
        self.is_retry = tp.topic.startswith(RETRY_PREFIX)
        self._lists: deque[list[Record]] = deque()
        self._wake = asyncio.Event()
        self._stop_now = False
        self._batch: list[tuple[Record, Any]] = []
        self._batch_handler: Handler | None = None
        self._batch_done: asyncio.Future[None] | None = None
        self._batch_deadline = 0.0
        self.task = asyncio.create_task(
            self._run(), name=f"choreo-partition-{tp.topic}-{tp.partition}"
        )

    def feed(self, records: list[Record]) -> None:
        self._lists.append(records)
        self.queued += len(records)
        self._wake.set()

    def stop(self) -> None:
        """Finish the record in hand (and any open batch), drop the rest uncommitted.

        Used on revocation and shutdown alike: whoever reads the partition next
        starts right after the last finished record, so nothing is lost and
        stopping never waits for a long backlog.
        """
        self._stop_now = True
        self._wake.set()

    async def _run(self) -> None:
        while True:
            if self._lists and not self._stop_now:
                records = self._lists.popleft()
                await self._handle(records)
                self.queued -= len(records)
                continue
            if self._batch:
                wait = self._batch_deadline - time.monotonic()
                if wait <= 0 or self._stop_now:
                    await self._flush()
                    continue
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), wait)
                continue
            if self._stop_now:
                self.queued = 0
                return
            self._wake.clear()
            await self._wake.wait()

    async def _handle(self, records: list[Record]) -> None:
        """The hot path: decode, call, remember deliveries; no awaits unless needed."""
        dispatcher = self.dispatcher
        route = dispatcher.route
        finish = self.progress.finish
        service = dispatcher.service.name
        instrument = dispatcher.instrument
        is_retry = self.is_retry
        monotonic = time.monotonic
        next_yield = monotonic() + YIELD_EVERY_S
        for record in records:
            if monotonic() >= next_yield:
                await asyncio.sleep(0)  # let signals, commits and rebalances in
                next_yield = monotonic() + YIELD_EVERY_S
            if self._stop_now or (is_retry and not await self._until_due(record)):
                return
            try:
                routed = route(record)
                if routed is None:
                    finish(record.offset)
                    continue
                handler, decode = routed
                event = decode(record)
            except DecodeError as error:
                finish(record.offset, await dispatcher.poisoned(record, error))
                continue
            if handler.batching is not None:
                await self._add_to_batch(handler, record, event)
                continue
            if self._batch:
                await self._flush()
            scope = None if instrument is None else instrument.consume(record, handler)
            ctx = Context(service, record, retry_state(record).attempts + 1 if is_retry else 1)
            guards = handler.guards
            for guard in guards:
                await guard.admit()
            try:
                result = handler.fn(event, ctx)
                if handler.is_async:
                    await result  # type: ignore[misc]
            except Exception as error:
                for guard in guards:
                    guard.record(False)
                finish(record.offset, await dispatcher.retry(handler, event, record, error, scope))
                continue
            for guard in guards:
                guard.record(True)
            try:
                if ctx.emitted or ctx.prepared:
                    finish(record.offset, await dispatcher.emit_all(ctx))
                else:
                    finish(record.offset)
            finally:
                if scope is not None:
                    scope.end(None)

    async def _until_due(self, record: Record) -> bool:
        """Wait (without polling) until a retry record is due; False if stopped meanwhile."""
        while (delay := due_in_s(record)) > 0 and not self._stop_now:
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), delay)
        return not self._stop_now

    async def _add_to_batch(self, handler: Handler, record: Record, event: Any) -> None:
        assert handler.batching is not None
        if self._batch and self._batch_handler is not handler:
            await self._flush()
        if not self._batch:
            self._batch_handler = handler
            self._batch_done = asyncio.get_running_loop().create_future()
            self._batch_deadline = time.monotonic() + handler.batching.max_wait_s
        assert self._batch_done is not None
        self._batch.append((record, event))
        self.progress.finish(record.offset, (self._batch_done,))
        if len(self._batch) >= handler.batching.max_size:
            await self._flush()

    async def _flush(self) -> None:
        items, handler, done = self._batch, self._batch_handler, self._batch_done
        self._batch, self._batch_handler, self._batch_done = [], None, None
        assert handler is not None and done is not None
        try:
            deliveries = await self.dispatcher.run_batch(handler, items)
            if deliveries:
                await asyncio.wait(deliveries)
            failed = [d for d in deliveries if d.cancelled() or d.exception() is not None]
        except BaseException as error:
            done.set_exception(error)
            raise
        if failed:
            done.set_exception(failed[0].exception() or asyncio.CancelledError())
        else:
            done.set_result(None)
