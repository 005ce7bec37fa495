"""The tracker loop: consume a saga's events, run the engine, write it all in one transaction.

Exactly-once, as seen by ``read_committed`` consumers: each batch of input records (and the
deadlines that fell due meanwhile) becomes one Kafka transaction holding the changelog writes,
the emitted compensation events and the consumed offsets (``send_offsets_to_transaction`` with
the consumer's group metadata, KIP-447). A tracker killed at any moment either committed all
three or none; its successor restores the committed state and re-reads the uncommitted input.
Memory is updated only after the commit, and an aborted transaction rewinds the consumer.

Membership is static (``group.instance.id`` = the instance id): a restarted instance gets its
partitions back without a rebalance; a dead instance's partitions move after the session
timeout. Fencing: the transactional id is ``choreo-saga-<saga>-<instance>``. A restarted
instance with the same id aborts whatever its predecessor left open as it starts; another
instance taking over partitions is protected by the group generation carried in the offsets (a
zombie's commit fails), and waits at most ``transaction.timeout.ms`` for a dead instance's
open transaction.

Partitions are assigned with the ``range`` strategy, which gives one instance partition *p* of
every input topic: that is what lets state live per partition (see ``topology``). The deadline
timer runs in the same loop every ``tick_s``; deadlines that passed while no tracker ran fire
as soon as the state is restored.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import confluent_kafka as ck

from choreo import _headers
from choreo._config import ServiceConfig
from choreo._emitter import EventEncoder
from choreo._errors import DecodeError, TransportError
from choreo._saga.definition import Saga
from choreo._saga.engine import Emit, Engine, Incoming, Outcome
from choreo._saga.state import SagaState
from choreo._saga.store import StateKey, StateStore, read_changelog
from choreo._saga.topology import Topology, check_broker, plan
from choreo._schemas import Catalog, Codec
from choreo._transport.confluent import ConfluentTransport, librdkafka_settings

_log = logging.getLogger("choreo.saga")

TRACE_HEADERS = ("traceparent", "tracestate")
SAGA_HEADER = "choreo_saga"
STEP_HEADER = "choreo_saga_step"
REASON_HEADER = "choreo_saga_reason"
BATCH_SIZE = 500


@dataclass
class _Batch:
    """What one transaction will write, and where to rewind if it aborts."""

    changes: dict[StateKey, SagaState | None] = field(default_factory=dict)
    emits: list[tuple[int, Emit]] = field(default_factory=list)
    first_offsets: dict[tuple[str, int], int] = field(default_factory=dict)

    def state(self, store: StateStore, key: StateKey) -> SagaState | None:
        if key in self.changes:
            return self.changes[key]
        return store.get(*key)

    def record(self, partition: int, key: StateKey, outcome: Outcome) -> None:
        for line in outcome.logs:
            _log.warning("%s", line)
        if outcome.changed:
            self.changes[key] = outcome.state
        self.emits += [(partition, emit) for emit in outcome.emits]


class SagaTracker:
    """Runs one saga (all its loaded versions) until ``stop`` is set."""

    def __init__(
        self,
        definitions: Sequence[Saga],
        config: ServiceConfig,
        *,
        instance: str | None = None,
        catalog: Catalog | None = None,
        tick_s: float = 0.2,
        transaction_timeout_ms: int = 10_000,
        session_timeout_ms: int = 10_000,
    ) -> None:
        self.engine = Engine(definitions)
        self.catalog = catalog or Catalog.load(config.schemas_dir)
        self.topology: Topology = plan(definitions, self.catalog)
        self.codec = Codec(self.catalog)
        self.config = config
        self.instance = instance or socket.gethostname()
        self.tick_s = tick_s
        self.store = StateStore()
        self.group_id = f"choreo-saga-{self.engine.name}"
        self._settings = librdkafka_settings(config.kafka)
        self._encoder = EventEncoder(self.catalog, self.codec, f"choreo-saga-{self.engine.name}")
        self._transaction_timeout_ms = transaction_timeout_ms
        self._session_timeout_ms = session_timeout_ms
        self._last_tick = 0.0
        self._consumer: ck.Consumer | None = None
        self._producer: ck.Producer | None = None

    # -- lifecycle --------------------------------------------------------------------------

    def start(self) -> None:
        """Create topics, check partition counts, fence predecessors, subscribe."""
        transport = ConfluentTransport(self.config.kafka)
        asyncio.run(transport.ensure_topics(self.topology.topic_configs(self.catalog)))
        self._producer = ck.Producer(
            {
                **self._settings,
                "transactional.id": f"{self.group_id}-{self.instance}",
                "transaction.timeout.ms": self._transaction_timeout_ms,
                "enable.idempotence": True,
                "acks": "all",
                "linger.ms": 5,
                "partitioner": "murmur2_random",
                "client.id": f"{self.group_id}-{self.instance}",
            }
        )
        metadata = self._producer.list_topics(timeout=15)
        check_broker(
            self.topology,
            {name: len(t.partitions) for name, t in metadata.topics.items() if t.error is None},
        )
        self._producer.init_transactions(30)
        self._consumer = ck.Consumer(
            {
                **self._settings,
                "group.id": self.group_id,
                "client.id": f"{self.group_id}-{self.instance}",
                "isolation.level": "read_committed",
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
                "partition.assignment.strategy": "range",
                # Static membership: a restarted instance takes its partitions back at once;
                # a dead one's move to the others after the session timeout.
                "group.instance.id": f"{self.group_id}-{self.instance}",
                "session.timeout.ms": self._session_timeout_ms,
            }
        )
        self._consumer.subscribe(
            list(self.topology.inputs),
            on_assign=self._on_assign,
            on_revoke=self._on_revoke,
            on_lost=self._on_revoke,
        )
        _log.info(
            "saga tracker '%s' v%s (instance %s): reading %s; state in %s",
            self.engine.name,
            ", v".join(str(v) for v in sorted(self.engine.versions)),
            self.instance,
            ", ".join(self.topology.inputs),
            self.topology.changelog,
        )

    def run(self, stop: threading.Event) -> None:
        """Start, then process until ``stop`` is set; the transaction in hand always finishes."""
        self.start()
        try:
            while not stop.is_set():
                self.poll_once()
        finally:
            self.close()

    def close(self) -> None:
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None
        if self._producer is not None:
            self._producer.flush(10)
            self._producer = None

    # -- rebalance --------------------------------------------------------------------------

    def _on_assign(self, consumer: ck.Consumer, partitions: list[ck.TopicPartition]) -> None:
        numbers = {tp.partition for tp in partitions} - self.store.partitions
        if not numbers:
            return
        started = time.monotonic()
        restored = read_changelog(self._settings, self.topology.changelog, numbers)
        for number, states in restored.items():
            self.store.load(number, states)
        _log.info(
            "restored %d saga(s) of partition(s) %s in %.2fs",
            sum(len(s) for s in restored.values()),
            sorted(numbers),
            time.monotonic() - started,
        )

    def _on_revoke(self, consumer: ck.Consumer, partitions: list[ck.TopicPartition]) -> None:
        # No transaction is open here: each one commits before the next poll.
        for number in {tp.partition for tp in partitions}:
            self.store.drop(number)

    # -- the loop ---------------------------------------------------------------------------

    def poll_once(self) -> None:
        consumer = self._consumer
        assert consumer is not None
        messages = consumer.consume(BATCH_SIZE, timeout=self.tick_s)
        batch = _Batch()
        for message in messages:
            self._handle(message, batch)
        now = time.time()
        if now - self._last_tick >= self.tick_s:
            self._last_tick = now
            self._fire_due(batch, now)
        if batch.changes or batch.emits or batch.first_offsets:
            self._commit(batch)

    def _handle(self, message: Any, batch: _Batch) -> None:
        error = message.error()
        if error is not None:
            _log.warning("consumer: %s", error.str())
            return
        topic, partition, offset = message.topic(), message.partition(), message.offset()
        batch.first_offsets.setdefault((topic, partition), offset)
        if not self.store.owns(partition):
            return
        headers = dict(message.headers() or [])
        try:
            event_type = self.codec.event_type_of(message.value())
            if not self.engine.accepts(event_type):
                return
            event = self.codec.decode(message.value(), self.engine.models[event_type])
        except DecodeError as exc:
            _log.warning("skipping %s[%d]@%d: %s", topic, partition, offset, exc)
            return
        saga_id = _text(headers.get(_headers.CORRELATION))
        event_id = _text(headers.get(_headers.ID))
        if saga_id is None or event_id is None:
            _log.warning(
                "skipping %s %s[%d]@%d: no %s/%s header",
                event_type,
                topic,
                partition,
                offset,
                _headers.CORRELATION,
                _headers.ID,
            )
            return
        trace = {
            name: value for name in TRACE_HEADERS if (value := _text(headers.get(name))) is not None
        }
        key = (partition, saga_id)
        incoming = Incoming(saga_id, event, event_id, trace)
        batch.record(
            partition, key, self.engine.handle(batch.state(self.store, key), incoming, time.time())
        )

    def _fire_due(self, batch: _Batch, now: float) -> None:
        due = [
            key
            for key, state in self.store.items()
            if state.wake_at is not None and state.wake_at <= now and key not in batch.changes
        ]
        due += [
            key
            for key, state in batch.changes.items()
            if state is not None and state.wake_at is not None and state.wake_at <= now
        ]
        for key in due:
            state = batch.state(self.store, key)
            if state is not None:
                batch.record(key[0], key, self.engine.tick(state, now))

    def _commit(self, batch: _Batch) -> None:
        producer, consumer = self._producer, self._consumer
        assert producer is not None and consumer is not None
        try:
            producer.begin_transaction()
            for (partition, saga_id), state in batch.changes.items():
                producer.produce(
                    self.topology.changelog,
                    key=saga_id.encode(),
                    value=None if state is None else state.to_bytes(),
                    partition=partition,
                )
            for _, emit in batch.emits:
                self._produce(producer, emit)
            offsets = self._offsets(consumer, batch)
            if offsets:
                producer.send_offsets_to_transaction(
                    offsets, consumer.consumer_group_metadata(), 30
                )
            producer.commit_transaction(30)
        except ck.KafkaException as exc:
            self._recover(exc, batch)
            return
        self.store.apply(batch.changes)
        for _, emit in batch.emits:
            _log.info(
                "saga %s: emitted %s for step '%s' (%s)",
                emit.correlation_id,
                emit.event.event_type,
                emit.step,
                emit.reason,
            )

    def _offsets(self, consumer: ck.Consumer, batch: _Batch) -> list[ck.TopicPartition]:
        """The position of every owned input partition: a timer-only transaction carries them
        too, so an instance that lost its partitions cannot commit stale decisions."""
        assigned = consumer.assignment()
        positions = consumer.position(assigned) if assigned else []
        return [tp for tp in positions if tp.offset >= 0]

    def _produce(self, producer: ck.Producer, emit: Emit) -> None:
        record = self._encoder.prepare(
            emit.event,
            correlation_id=emit.correlation_id,
            causation_id=emit.causation_id,
            event_id=emit.event_id,
        )
        headers = [
            *record.headers,
            *((name, value.encode()) for name, value in emit.trace.items()),
            (SAGA_HEADER, self.engine.name.encode()),
            (STEP_HEADER, emit.step.encode()),
            (REASON_HEADER, emit.reason.encode()),
        ]
        wire: list[tuple[str, str | bytes | None]] = list(headers)
        producer.produce(record.topic, key=record.key, value=record.value, headers=wire)

    def _recover(self, exc: ck.KafkaException, batch: _Batch) -> None:
        """Abort and rewind, so the batch is processed again from the committed state."""
        producer, consumer = self._producer, self._consumer
        assert producer is not None and consumer is not None
        error = exc.args[0] if exc.args else None
        if isinstance(error, ck.KafkaError) and error.fatal():
            raise TransportError(
                f"saga tracker '{self.engine.name}' was fenced or hit a fatal error: "
                f"{error.str()}; restart it"
            ) from None
        _log.warning("transaction aborted, re-reading the batch: %s", exc)
        try:
            producer.abort_transaction(30)
        except ck.KafkaException as abort_error:
            raise TransportError(f"cannot abort the saga transaction: {abort_error}") from None
        for (topic, partition), offset in batch.first_offsets.items():
            if self.store.owns(partition):
                consumer.seek(ck.TopicPartition(topic, partition, offset))


def _text(value: bytes | str | None) -> str | None:
    if value is None:
        return None
    return value.decode() if isinstance(value, bytes) else value
