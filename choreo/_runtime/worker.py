"""One task per assigned partition: records are handled in offset order.

Partitions run concurrently with each other; within one, a record is started
only after the previous one finished, which is what keeps per-key order.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

from choreo._context import Context
from choreo._errors import DecodeError
from choreo._runtime.clock import current_clock
from choreo._runtime.dispatch import Dispatcher
from choreo._runtime.progress import Progress
from choreo._runtime.retry_topics import PREFIX as RETRY_PREFIX
from choreo._runtime.retry_topics import due_in_s, retry_state
from choreo._service import Handler
from choreo._transport.base import Record, TopicPartition

YIELD_EVERY_S = 0.05
"""Sync handlers never await; give the event loop a turn at least this often."""


Finish = Callable[..., None]


class PartitionWorker:
    """Handles one partition in offset order, or per key with ``key_concurrency`` lanes.

    With key lanes, each key's records are handled in order by its own task
    (up to ``key_concurrency`` keys at once) while ``Progress`` still gets one
    entry per record in offset order, resolved when that record is done, so the
    commit point never passes an unfinished record.
    """

    def __init__(
        self,
        tp: TopicPartition,
        dispatcher: Dispatcher,
        key_concurrency: int = 0,
        gate: asyncio.Event | None = None,
    ) -> None:
        self.tp = tp
        self.gate = gate
        """Exactly-once: records start only while it is set (see the runner's commit)."""
        self.busy = 0
        """Records being handled right now (lanes may handle several)."""
        self.dispatcher = dispatcher
        self.key_concurrency = key_concurrency
        self._lanes: dict[bytes | None, deque[tuple[Record, asyncio.Future[None]]]] = {}
        self._lane_tasks: set[asyncio.Task[None]] = set()
        self._lane_freed = asyncio.Event()
        self.progress = Progress()
        self.queued = 0
        """Records fed but not yet handled (for backpressure)."""
        self.is_retry = tp.topic.startswith(RETRY_PREFIX)
        self.holds = self.is_retry or tp.topic in dispatcher.scheduled_topics
        """Records here may carry a due time (a retry's backoff, a scheduled delivery)."""
        self._lists: deque[list[Record]] = deque()
        self._wake = asyncio.Event()
        self._stop_now = False
        self._batch: list[tuple[Record, Any]] = []
        self._batch_handler: Handler | None = None
        self._batch_done: asyncio.Future[None] | None = None
        self._batch_deadline = 0.0
        self._next_yield = 0.0
        self._lane_error: BaseException | None = None
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

    @property
    def stopped(self) -> bool:
        return self._stop_now

    @property
    def idle(self) -> bool:
        """Every record fed was handled and its outputs acknowledged (for the commit point)."""
        return not self.queued and not self._stop_now and self.progress.idle

    async def _run(self) -> None:
        try:
            await self._loop()
        finally:
            self._forget_unfinished()

    def _forget_unfinished(self) -> None:
        """Cancelled past the grace period (or failed): drop what lanes and an open batch
        hold from the commit point, so settling never waits for records never finished."""
        held = [record.offset for lane in self._lanes.values() for record, _ in lane]
        held += [record.offset for record, _ in self._batch]
        if held:
            self.progress.abandon(min(held))
        self._lanes.clear()
        self._batch, self._batch_handler, self._batch_done = [], None, None

    async def _loop(self) -> None:
        while True:
            if self._lists and not self._stop_now:
                records = self._lists.popleft()
                if self.key_concurrency:
                    await self._spread(records)
                else:
                    await self._handle(records, self.progress.finish)
                    self.queued -= len(records)
                continue
            if self._batch:
                wait = self._batch_deadline - time.monotonic()
                if wait <= 0 or self._stop_now:
                    await self._gated(self._flush())
                    continue
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), wait)
                continue
            if self._stop_now:
                await self._end_lanes()
                self.queued = 0
                return
            self._wake.clear()
            await self._wake.wait()

    async def _spread(self, records: list[Record]) -> None:
        """Key-lane mode: queue each record on its key's lane, opening lanes up to the limit."""
        loop = asyncio.get_running_loop()
        for record in records:
            lane = self._lanes.get(record.key)
            while lane is None and len(self._lanes) >= self.key_concurrency:
                if self._stop_now:
                    return
                self._lane_freed.clear()
                await self._lane_freed.wait()
                lane = self._lanes.get(record.key)
            if self._stop_now:
                return
            done: asyncio.Future[None] = loop.create_future()
            self.progress.finish(record.offset, (done,))
            if lane is None:
                lane = self._lanes[record.key] = deque()
                task = asyncio.create_task(self._run_lane(record.key, lane))
                self._lane_tasks.add(task)
                task.add_done_callback(self._lane_ended)
            lane.append((record, done))

    async def _run_lane(
        self, key: bytes | None, lane: deque[tuple[Record, asyncio.Future[None]]]
    ) -> None:
        try:
            while lane and not self._stop_now:
                record, done = lane[0]
                await self._handle([record], _resolver(done))
                lane.popleft()
                self.queued -= 1
        finally:
            if not lane:
                del self._lanes[key]
            self._lane_freed.set()

    def _lane_ended(self, task: asyncio.Task[None]) -> None:
        """A lane that failed stops the whole partition; ``_end_lanes`` raises its error."""
        self._lane_tasks.discard(task)
        if not task.cancelled() and task.exception() is not None and self._lane_error is None:
            self._lane_error = task.exception()
            self.stop()

    async def _end_lanes(self) -> None:
        """After a stop: wait for the lanes' records in hand, forget the ones never started."""
        self._lane_freed.set()
        await asyncio.gather(*list(self._lane_tasks), return_exceptions=True)
        self._forget_unfinished()
        if self._lane_error is not None:
            raise self._lane_error

    async def _handle(self, records: list[Record], finish: Finish) -> None:
        if self.gate is None or not self.holds:
            # Exactly-once: ``_handle_all`` starts each record only while the gate is open.
            await self._gated(self._handle_all(records, finish))
            return
        for record in records:
            if not await self._until_due(record):
                return  # waiting for a due time must not hold up a transaction commit
            await self._gated(self._handle_all([record], finish))

    async def _gated(self, work: Coroutine[Any, Any, None]) -> None:
        """Exactly-once: run ``work`` only while no transaction commits, and count it as busy."""
        if self.gate is None:
            await work
            return
        if not self.gate.is_set():
            await self.gate.wait()
        self.busy += 1
        try:
            await work
        finally:
            self.busy -= 1

    async def _handle_all(self, records: list[Record], finish: Finish) -> None:
        """The hot path: decode, call, remember deliveries; no awaits unless needed."""
        dispatcher = self.dispatcher
        route = dispatcher.route
        service = dispatcher.service.name
        instrument = dispatcher.instrument
        send_all = dispatcher.emitter.send_all  # outputs are prepared by then (below)
        is_retry = self.is_retry
        holds = self.holds
        monotonic = time.monotonic
        gate = self.gate
        for record in records:
            if monotonic() >= self._next_yield:  # kept on the worker: lanes call one at a time
                await asyncio.sleep(0)  # let signals, commits and rebalances in
                self._next_yield = monotonic() + YIELD_EVERY_S
            if gate is not None and not gate.is_set():
                await self._between_records(gate)
            if self._stop_now or (holds and not await self._until_due(record)):
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
                if ctx.emitted and ctx.prepared is None:
                    ctx.prepared = dispatcher.prepare_all(ctx)  # an unencodable emit is its error
            except Exception as error:
                for guard in guards:
                    guard.record(False)
                finish(record.offset, await dispatcher.retry(handler, event, record, error, scope))
                continue
            except BaseException as error:  # cancelled mid-handler: the record stays unfinished
                for guard in guards:
                    guard.record(False)  # a breaker's probe must not stay taken
                if scope is not None:
                    scope.end(error)
                raise
            for guard in guards:
                guard.record(True)
            try:
                finish(record.offset, await send_all(ctx.prepared) if ctx.prepared else ())
            except BaseException as error:
                if scope is not None:
                    scope.end(error)
                raise
            if scope is not None:
                scope.end(None)

    async def _between_records(self, gate: asyncio.Event) -> None:
        """Exactly-once, inside a run of records: not busy while a transaction commits."""
        self.busy -= 1
        try:
            await gate.wait()
        finally:
            self.busy += 1

    async def _until_due(self, record: Record) -> bool:
        """Wait (without polling) until a held record is due; False if stopped meanwhile.

        A batch collected before it is handled first: the records after it in the partition
        cannot join that batch before it is due, which may be days away.
        """
        clock = current_clock()  # a test's ManualClock makes time pass at once
        while (delay := due_in_s(record, clock)) > 0 and not self._stop_now:
            if self._batch:
                await self._gated(self._flush())
                continue  # the flush took time: the delay is shorter now
            self._wake.clear()
            await clock.sleep(delay, self._wake)
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
        except asyncio.CancelledError:
            self.progress.abandon(items[0][0].offset)  # never finished: read again, not failed
            raise
        except BaseException as error:
            done.set_exception(error)
            raise
        if failed:
            done.set_exception(failed[0].exception() or asyncio.CancelledError())
        else:
            done.set_result(None)


def _resolver(done: asyncio.Future[None]) -> Finish:
    """A ``finish`` for one lane record: ``done`` resolves once its deliveries have."""

    def finish(offset: int, deliveries: Sequence[asyncio.Future[None]] = ()) -> None:
        if not deliveries:
            done.set_result(None)
            return

        def settled(gathered: asyncio.Future[list[None]]) -> None:
            if gathered.cancelled():
                done.set_exception(asyncio.CancelledError())
            elif (error := gathered.exception()) is not None:
                done.set_exception(error)
            else:
                done.set_result(None)

        asyncio.gather(*deliveries).add_done_callback(settled)

    return finish
