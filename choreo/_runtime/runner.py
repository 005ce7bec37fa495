"""The service's consumer loop: poll, hand records to partition workers, commit, shut down.

Offsets move only through ``Progress.commit_point``, so whatever stops the
loop (SIGTERM, a rebalance, a crash) the committed offset never passes a
record that was not handled and whose outputs were not acknowledged.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterable

from choreo._config import ServiceConfig, transactional_id
from choreo._emitter import Emitter
from choreo._errors import SecurityError, TopologyError, TransportError
from choreo._runtime.dead_letters import SCRUBBED, DeadLetterRefused, DeadLetters, dlq_topic
from choreo._runtime.dispatch import Dispatcher
from choreo._runtime.instrument import Instrumentation
from choreo._runtime.retry_topics import LAST_ERROR, RetryTopics, retry_topic
from choreo._runtime.worker import PartitionWorker
from choreo._schedule import start_schedules
from choreo._schemas import Catalog, Codec, check_model
from choreo._schemas.registry_setup import check_registry, registry_for
from choreo._schemas.registry_wire import RegistrySchemas
from choreo._security.redact import Redactor, ScrubbingProducer
from choreo._service import Handler, Service
from choreo._transport.base import (
    Consumer,
    Membership,
    Producer,
    Record,
    TopicConfig,
    TopicPartition,
    TransactionAborted,
    TransactionalProducer,
    Transport,
)

log = logging.getLogger("choreo.runtime")

POLL_TIMEOUT_S = 0.1
DLQ_RETENTION_MS = 14 * 24 * 3600 * 1000


class ServiceRunner:
    """Runs one service against one transport; ``start`` checks everything before consuming."""

    def __init__(
        self,
        service: Service,
        config: ServiceConfig,
        transport: Transport,
        catalog: Catalog,
        *,
        raise_errors: bool = False,
        instrument: Instrumentation | None = None,
        registry: RegistrySchemas | None = None,
    ) -> None:
        """``registry``: the one to resolve schema ids with, instead of the config's."""
        self.service = service
        self.instrument = instrument
        self.config = config
        self.transport = transport
        self.catalog = catalog
        self.registry = registry or registry_for(config, catalog)
        self.codec = Codec(catalog, max_bytes=config.max_record_bytes, registry=self.registry)
        self.group_id = config.group_id or service.name
        self.client_id = f"choreo-{service.name}"
        self.raise_errors = raise_errors
        self._retry_partitions: dict[str, int] = {}
        self.topics = self._subscriptions()
        self.workers: dict[TopicPartition, PartitionWorker] = {}
        self._paused: set[TopicPartition] = set()
        self.stopped: dict[TopicPartition, str] = {}
        """Partitions stopped at a dead letter the broker refused, and why (see ``_stop_at``)."""
        self._committed: dict[TopicPartition, int] = {}
        self._consumer: Consumer | None = None
        self._producer: Producer | None = None
        self._dispatcher: Dispatcher | None = None
        self._failure: BaseException | None = None
        self._transaction: TransactionalProducer | None = None
        self._handed: dict[TopicPartition, list[Record]] = {}
        """Exactly-once: the records handed to each worker since its last commit, handed
        again to a fresh worker if the transaction aborts (``_rewind``)."""
        self._gate = asyncio.Event()
        """Exactly-once: cleared while a transaction commits; workers wait at record starts."""
        self._gate.set()
        self.polled_at = 0.0
        """``time.monotonic()`` when the loop last returned from a poll (for readiness probes)."""

    def _subscriptions(self) -> list[str]:
        """Topics from the handlers' event types; every model is checked against its schema."""
        if not self.service.handlers:
            raise TopologyError(f"service {self.service.name!r} has no handlers")
        if self.config.key_concurrency and any(h.batching for h in self.service.handlers):
            raise TopologyError(
                f"{self.service.name}: key_concurrency cannot be combined with batch handlers"
            )
        if self.config.key_concurrency and self.config.exactly_once:
            raise TopologyError(
                f"{self.service.name}: key_concurrency cannot be combined with exactly_once"
            )
        topics: list[str] = []
        for handler in self.service.handlers:
            if handler.event is None:
                if handler.topic is not None and handler.topic not in topics:
                    topics.append(handler.topic)
                    self._add_retry_topics(topics, handler, handler.topic, partitions=1)
                continue
            event_type = handler.event.event_type
            try:
                spec = self.catalog.topic_of(event_type)
            except TopologyError:
                raise TopologyError(
                    f"{self.service.name}: handler {handler.name} takes {event_type}, "
                    "but no topic in the catalog carries it"
                ) from None
            check_model(handler.event, self.catalog.latest(event_type))
            self.codec.register(handler.event)
            if spec.name not in topics:
                topics.append(spec.name)
            self._add_retry_topics(topics, handler, spec.name, spec.partitions)
        return topics

    def _add_retry_topics(
        self, topics: list[str], handler: Handler, source: str, partitions: int
    ) -> None:
        """One retry topic per delay of the handler's policy, read by this service."""
        for level in range(1, len(handler.retry.delays_s) + 1):
            retry = retry_topic(self.service.name, source, level)
            if retry not in topics:
                topics.append(retry)
                self._retry_partitions[retry] = partitions

    def topic_configs(self) -> list[TopicConfig]:
        """What this service needs to exist: the catalog topics it reads and emits, its DLQs,
        its schedules' topics."""
        configs = [spec.topic_config() for spec in self.catalog.topics.values()]
        configs += [
            TopicConfig(dlq_topic(self.service.name, topic), 1, DLQ_RETENTION_MS)
            for topic in self.topics
            if topic not in self._retry_partitions
        ]
        configs += [
            TopicConfig(topic, partitions, DLQ_RETENTION_MS)
            for topic, partitions in self._retry_partitions.items()
        ]
        configs += [schedule.topic_config() for schedule in self.service.schedules]
        return configs

    async def start(self) -> None:
        await self.transport.check_reachable(timeout_s=10.0)
        await check_registry(self.registry)
        if self.config.create_topics:
            await self.transport.ensure_topics(self.topic_configs())
        strangers = [
            m for m in await self.transport.group_members(self.group_id) if m != self.client_id
        ]
        if strangers:
            raise TopologyError(
                f"consumer group {self.group_id!r} already has members of another service "
                f"({', '.join(sorted(set(strangers)))}); give each service its own group"
            )
        await start_schedules(self.service.schedules, self.transport, self.client_id)
        if self.config.exactly_once:
            self._transaction = self.transport.transactional_producer(
                self.client_id, transactional_id(self.group_id, self.config.instance())
            )
            await self._transaction.begin()  # fences this instance's previous incarnation
            self._producer = self._transaction
        else:
            self._producer = self.transport.producer(self.client_id)
        emitter = Emitter(
            self.catalog, self.codec, self._producer, self.service.name, self.instrument
        )
        # Masks secrets (configured, or shaped like a DSN's) in the error text they add.
        redact = Redactor(self.config.kafka.secrets())
        failures = ScrubbingProducer(self._producer, redact, SCRUBBED | {LAST_ERROR})
        dead_letters = DeadLetters(failures, self.service.name, self.group_id, self.instrument)
        self._dispatcher = Dispatcher(
            self.service,
            self.codec,
            emitter,
            dead_letters,
            RetryTopics(failures, self.service.name, self.instrument),
            raise_errors=self.raise_errors,
            instrument=self.instrument,
            group=self.group_id,
        )
        self._consumer = self.transport.consumer(self.group_id, self.client_id, self.membership())
        await self._consumer.subscribe(self.topics, self)

    def membership(self) -> Membership:
        """The group membership the settings ask for (static only with a given id)."""
        config = self.config
        static_id = config.instance_id if config.static_membership else None
        return Membership(config.session_timeout_s, static_id)

    # RebalanceListener -------------------------------------------------------------

    async def on_assigned(self, partitions: list[TopicPartition]) -> None:
        assert self._dispatcher is not None
        for tp in partitions:
            if tp not in self.workers:
                self._start_worker(tp)
        log.info("%s: assigned %s", self.service.name, _names(partitions))

    def _start_worker(self, tp: TopicPartition) -> PartitionWorker:
        assert self._dispatcher is not None
        worker = PartitionWorker(
            tp,
            self._dispatcher,
            self.config.key_concurrency,
            self._gate if self.config.exactly_once else None,
        )
        worker.task.add_done_callback(self._worker_ended)
        self.workers[tp] = worker
        return worker

    async def on_revoked(self, partitions: list[TopicPartition]) -> None:
        leaving = [self.workers.pop(tp) for tp in partitions if tp in self.workers]
        for worker in leaving:
            worker.stop()
        await self._finish(leaving, timeout_s=self.config.shutdown_grace_s)
        for tp in partitions:
            self._paused.discard(tp)
            self.stopped.pop(tp, None)
            self._committed.pop(tp, None)
            self._handed.pop(tp, None)
        log.info("%s: revoked %s", self.service.name, _names(partitions))

    # The loop ----------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Consume until ``stop`` is set or a worker fails; then finish, commit and close."""
        consumer = self._consumer
        assert consumer is not None, "start() first"
        last_commit = time.monotonic()
        try:
            while not stop.is_set() and self._failure is None:
                records = await consumer.poll(self.config.max_poll_records, POLL_TIMEOUT_S)
                self.polled_at = time.monotonic()
                if records:
                    self._feed(records)
                    self._apply_backpressure(consumer)
                elif self._paused:
                    self._apply_backpressure(consumer)
                if time.monotonic() - last_commit >= self.config.commit_interval_s:
                    await self.commit()
                    last_commit = time.monotonic()
        finally:
            await self._shutdown()
        if self._failure is not None:
            raise self._failure

    def _feed(self, records: list[Record]) -> None:
        """Split a poll's records into per-partition runs (polls come grouped by partition).

        Records of a partition revoked while the poll was in flight have no
        worker; they are dropped, uncommitted, for the new owner to read.
        """
        start = 0
        first = records[0]
        topic, partition = first.topic, first.partition
        for index, record in enumerate(records):
            if record.partition != partition or record.topic != topic:
                self._feed_run(topic, partition, records[start:index])
                start, topic, partition = index, record.topic, record.partition
        self._feed_run(topic, partition, records[start:] if start else records)

    def _feed_run(self, topic: str, partition: int, run: list[Record]) -> None:
        worker = self.workers.get(TopicPartition(topic, partition))
        if worker is not None and not worker.stopped:
            worker.feed(run)
            if self._transaction is not None:
                self._handed.setdefault(worker.tp, []).extend(run)

    def in_flight(self) -> int:
        return sum(worker.queued for worker in self.workers.values())

    def committed(self) -> dict[TopicPartition, int]:
        """The offsets this member last committed, per partition it still owns (for lag)."""
        return dict(self._committed)

    async def high_watermarks(self) -> dict[TopicPartition, int]:
        """Log end offsets of the assigned partitions (for lag); empty before ``start``."""
        if self._consumer is None or not self.workers:
            return {}
        return await self._consumer.high_watermarks(list(self.workers))

    def _apply_backpressure(self, consumer: Consumer) -> None:
        """Pause busy partitions above ``max_in_flight``; resume them below half of it.

        Retry partitions hold records waiting for their due time; they are not
        counted against the source partitions (which must keep flowing) and
        are paused on their own once a poll's worth of records waits there.
        """
        limit = self.config.max_in_flight
        batch = self.config.max_poll_records
        sources = [w for w in self.workers.values() if not w.is_retry]
        in_flight = sum(w.queued for w in sources)
        pause = {w.tp for w in self.workers.values() if w.is_retry and w.queued > batch}
        if in_flight > limit:
            pause |= {w.tp for w in sources if w.queued}
        pause -= self._paused
        if pause:
            consumer.pause(pause)
            self._paused |= pause
        resume = {
            tp
            for tp in self._paused
            if tp in self.workers
            and tp not in self.stopped
            and (
                self.workers[tp].queued <= batch // 2
                if self.workers[tp].is_retry
                else in_flight <= limit // 2
            )
        }
        if resume:
            consumer.resume(resume)
            self._paused -= resume

    async def commit(self, workers: Iterable[PartitionWorker] | None = None) -> None:
        """Commit every partition whose commit point moved since the last commit."""
        assert self._consumer is not None
        # Between polls only (not on a revocation, inside one): then a position says where
        # the records handed to the workers ended, transaction markers behind them included.
        positions = await self._idle_positions() if workers is None else {}
        if self._transaction is not None:
            await self._commit_transaction(workers, positions)
            return
        offsets = self._moved(self.workers.values() if workers is None else workers, positions)
        if not offsets:
            return
        try:
            await self._consumer.commit(offsets)
        except TransportError as error:
            # Broker away, coordinator moving, group rebalancing: the offsets stay
            # uncommitted and are tried again next time (or the records are read
            # again by their next owner): at-least-once holds either way.
            log.warning("%s: commit failed, retrying at the next one: %s", self.service.name, error)
            return
        self._committed.update(offsets)

    async def _idle_positions(self) -> dict[TopicPartition, int]:
        """Consumer positions of the partitions whose workers handled all they were given."""
        assert self._consumer is not None
        idle = [worker.tp for worker in self.workers.values() if worker.idle]
        return await self._consumer.positions(idle) if idle else {}

    def _moved(
        self, workers: Iterable[PartitionWorker], positions: dict[TopicPartition, int]
    ) -> dict[TopicPartition, int]:
        """Commit points that moved. An idle worker's point goes up to the consumer's
        position: what lies between is only transaction markers (or aborted records), which
        are never returned, so without this lag would stay above 0 after every transaction."""
        offsets: dict[TopicPartition, int] = {}
        for worker in workers:
            try:
                point = worker.progress.commit_point()
            except DeadLetterRefused as refused:
                self._stop_at(worker, refused)
                point = worker.progress.next_offset  # up to the record that could not be parked
            position = positions.get(worker.tp)
            if point is not None and position is not None and position > point and worker.idle:
                point = position
            if point is not None and self._committed.get(worker.tp) != point:
                offsets[worker.tp] = point
        return offsets

    def _stop_at(self, worker: PartitionWorker, refused: DeadLetterRefused) -> None:
        """A record that can be neither handled nor parked stops its partition, not the
        service: its offset stays uncommitted, the partition is paused (and stays paused),
        and the other partitions keep flowing. Restarting cannot help until someone fixes
        the cause, so the service does not exit; ``/readyz`` and the metrics say why."""
        if worker.tp in self.stopped:
            return
        assert self._consumer is not None
        self.stopped[worker.tp] = str(refused)
        worker.stop()
        self._consumer.pause([worker.tp])
        log.error(
            "%s: partition %s[%d] stopped, the others go on: %s",
            self.service.name,
            worker.tp.topic,
            worker.tp.partition,
            refused,
        )

    async def _commit_transaction(
        self, extra: Iterable[PartitionWorker] | None, positions: dict[TopicPartition, int]
    ) -> None:
        """Exactly-once: stop every worker at a record boundary, then commit the
        transaction holding what they emitted with the offsets of what they handled.

        Stopping first is what makes the pair exact: no record's outputs are in
        a transaction that does not also carry its offset. A transaction the
        producer had to abort (``TransactionAborted``: a broker failure, this
        member dropped from its group) has its records handled again from the
        last commit (``_rewind``) and the service goes on; any other failure aborts
        and stops the service. Either way the aborted outputs were never
        visible to ``read_committed`` readers.
        """
        producer, gate, consumer = self._transaction, self._gate, self._consumer
        assert producer is not None and consumer is not None
        workers = {**{w.tp: w for w in extra or ()}, **self.workers}.values()
        gate.clear()
        try:
            while any(worker.busy for worker in workers):
                await asyncio.sleep(0.001)
            try:
                await producer.flush()
                offsets = await self._offsets_in(producer, workers, positions)
                if not offsets:
                    return
                await producer.commit(offsets, consumer)
            except TransactionAborted as aborted:
                log.warning("%s: %s", self.service.name, aborted)
                self._rewind()
            except Exception:
                with contextlib.suppress(Exception):
                    await producer.abort()
                raise
            else:
                self._committed.update(offsets)
                for tp, offset in offsets.items():
                    if self._handed.get(tp):
                        self._handed[tp] = [r for r in self._handed[tp] if r.offset >= offset]
            await producer.begin()
        finally:
            gate.set()

    async def _offsets_in(
        self,
        producer: TransactionalProducer,
        workers: Iterable[PartitionWorker],
        positions: dict[TopicPartition, int],
    ) -> dict[TopicPartition, int]:
        """The offsets this transaction commits; a send of it that was not written aborts it
        (its records are handled again), unless no retry can write it (a missing ACL)."""
        try:
            return self._moved(workers, positions)
        except TransportError as failed:
            if isinstance(failed.__cause__, SecurityError):
                raise
            await producer.abort()
            raise TransactionAborted(f"aborting the transaction: {failed}") from None

    def _rewind(self) -> None:
        """After an aborted transaction, every record handed to a running worker since the
        last commit is handled again: the worker (the gate holds it at a record boundary)
        is replaced by a fresh one fed those records again. The consumer is not moved (a
        librdkafka seek waits without limit for a partition whose leader is gone). Stopped
        workers (revoked, shutting down, or a partition stopped at a refused dead letter)
        keep what they have: whoever reads their partition next reads it again."""
        for tp, worker in list(self.workers.items()):
            handed = self._handed.get(tp)
            if worker.stopped or not handed:
                continue
            worker.stop()  # it ends when the gate opens, having started nothing more
            self._start_worker(tp).feed(list(handed))

    def _worker_ended(self, task: asyncio.Task[None]) -> None:
        """A worker that ends on its own (an error, or a CancelledError leaking from a
        handler's library) leaves its partition unhandled: the service must stop."""
        if self._failure is not None:
            return
        stopped = any(w.task is task and w.stopped for w in self.workers.values())
        if task.cancelled():
            if not stopped and any(w.task is task for w in self.workers.values()):
                self._failure = TransportError(
                    f"{self.service.name}: a partition worker was cancelled"
                )
        elif task.exception() is not None:
            self._failure = task.exception()
        if self._failure is not None:
            log.error("%s: stopping: %r", self.service.name, self._failure)

    async def _finish(self, workers: list[PartitionWorker], timeout_s: float) -> None:
        """Let workers end (cancel the ones past the deadline), settle deliveries, commit."""
        if not workers:
            return
        deadline = time.monotonic() + timeout_s
        tasks = [w.task for w in workers]
        _, late = await asyncio.wait(tasks, timeout=timeout_s)
        for task in late:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for worker in workers:  # deliveries still out at the deadline stay uncommitted
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    worker.progress.settle(), max(0.1, deadline - time.monotonic())
                )
        try:
            await self.commit(workers)
        except Exception as error:  # a failed delivery: commit nothing more, report it
            self._failure = self._failure or error

    async def _shutdown(self) -> None:
        workers = list(self.workers.values())
        for worker in workers:
            worker.stop()
        await self._finish(workers, timeout_s=self.config.shutdown_grace_s)
        if self._consumer is not None:
            await self._consumer.close()
        if self._transaction is not None and self._failure is None:
            with contextlib.suppress(Exception):
                await self._transaction.abort()  # the empty one begun after the last commit
        if self._producer is not None:
            try:  # bounded: a broker that is gone must not keep the process alive
                await asyncio.wait_for(self._producer.close(), self.config.shutdown_grace_s)
            except TimeoutError:
                log.error(
                    "%s: unsent records dropped at exit (broker unreachable)", self.service.name
                )


def _names(partitions: Iterable[TopicPartition]) -> str:
    return ", ".join(f"{tp.topic}[{tp.partition}]" for tp in partitions) or "nothing"
