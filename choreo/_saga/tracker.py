"""The tracker loop: consume a saga's events, run the engine, write it all in one transaction.

Exactly-once, as seen by ``read_committed`` consumers: each batch of input records (and the
deadlines that fell due meanwhile) becomes one Kafka transaction holding the changelog writes,
the emitted compensation events and the consumed offsets (``send_offsets_to_transaction`` with
the consumer's group metadata, KIP-447). A tracker killed at any moment either committed all
three or none; its successor restores the committed state and re-reads the uncommitted input.
Memory is updated only after the commit, and an aborted transaction rewinds the consumer.

A transaction commits in a background thread while the loop decides the next batch on top of
it (the engine is CPU, a commit is mostly waiting on the broker: measured here, ~15 ms a
transaction, a sixth of the wall time). At most one is in flight: the next is sent only once
it committed. If it aborts, the batch decided on top of it is discarded with it and both are
read again from the committed state; a rebalance or a stop waits for it first. One whose call
outlived its own timeout (librdkafka #5456), or that has not finished after ``STUCK_S``, is
given up the same way (``txn_calls``), and a new producer takes over; unless the broker took its
commit after all (the input offsets it moved are the group's once the new producer is ready),
which keeps its batch: read again, each compensation in it was sent twice (a transaction of
deadlines alone moves no offset: its deadlines fire again, under the same event ids).

Membership follows the services' settings (README "Scaling out"): static
(``group.instance.id``) when the instance id is stable (``--instance`` or
``static_membership``), so a restarted instance gets its partitions back without a rebalance; a
dead instance's partitions move after ``session_timeout_s``. Fencing: the transactional id is
``choreo.choreo-saga-<saga>.<instance>``. A restarted instance with the same id aborts whatever its
predecessor left open as it starts; another instance taking over partitions is protected by the
group generation carried in the offsets (a zombie's commit fails), and waits at most
``transaction.timeout.ms`` for a dead instance's open transaction.

Input records the tracker cannot read (not Avro, an unknown schema, no correlation or event id
header) go to ``choreo.dlq.choreo-saga-<saga>.<topic>`` with the runtime's DLQ headers, in the
same transaction, so ``choreo dlq`` shows and replays them like any consumer's. Records of
event types the saga does not use are skipped: they are other consumers' business.

Partitions are assigned with the ``range`` strategy, which gives one instance partition *p* of
every input topic: that is what lets state live per partition (see ``topology``). The deadline
timer runs in the same loop every ``tick_s`` and pops only what is due from a heap of wake
times (``timers``), rebuilt from the restored states on assignment; deadlines that passed
while no tracker ran fire as soon as the state is restored. Finished sagas get a tombstone in
the changelog once their definition's ``retention`` has passed, and so do sagas whose version is
not loaded, ``retention`` after their last change (see ``Engine.wake_at``).

Tracing (with a ``tracer_provider``; none means no spans and no tracing cost): each input event
of the saga gets a CONSUMER span ``saga-tracker <saga> <Event>``, child of the context its
producer left in the headers, with the messaging attributes the runtime's spans carry plus
``choreo.saga.id``, ``choreo.saga.step`` and ``choreo.saga.decision`` (a record without trace
context continues the start event's trace instead); a fired deadline gets a
``saga-tracker <saga> deadline`` span, child of the start event's stored context. Each emitted
compensation carries the context of the span whose decision emitted it, so the service that
handles it joins the same trace. Spans end once the transaction committed (or aborted, then
marked as errors: the batch is decided again). Without tracing, compensations carry the start
event's ``traceparent``/``tracestate``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from functools import partial
from types import MappingProxyType
from typing import Any

import confluent_kafka as ck
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import Span, SpanKind, Status, StatusCode
from opentelemetry.util.types import AttributeValue

from choreo import _headers
from choreo._config import ServiceConfig, transactional_id, transactional_prefix
from choreo._emitter import EventEncoder
from choreo._errors import DecodeError, SchemaError, TransportError
from choreo._observability import carrier
from choreo._observability.common import short_type
from choreo._observability.tracing import (
    CORRELATION_ID,
    KEY,
    MESSAGE_ID,
    OFFSET,
    Tracing,
)
from choreo._runtime.dead_letters import failure_headers
from choreo._runtime.heap import hand_back_freed_memory, handing_back, malloc_tuning
from choreo._saga.caught_up import ReadGate
from choreo._saga.definition import Saga
from choreo._saga.engine import Decoded, Emit, Engine, Incoming, Outcome
from choreo._saga.event_time import event_time
from choreo._saga.peek import timing
from choreo._saga.state import SagaState, SagaStatus, UnreadableState
from choreo._saga.store import StateKey, StateStore, read_changelog_bytes
from choreo._saga.timers import Timers
from choreo._saga.topology import Topology, check_broker, plan, tracker_name
from choreo._schemas import Catalog, Codec, Event
from choreo._schemas.registry_setup import registry_for
from choreo._transport.base import Headers
from choreo._transport.confluent import (
    AUTHORIZATION_ERRORS,
    ConfluentTransport,
    FencedByItself,
    SessionWatch,
    denied,
    group_membership,
    is_fatal,
    is_fence,
    librdkafka_settings,
)
from choreo._transport.txn_calls import (
    CallWatch,
    Hung,
    request_timeout_s,
    resumed,
    settle,
    started,
)

_log = logging.getLogger("choreo.saga")

SAME_INSTANCE = (
    "; another tracker runs with the same instance id: give each its own --instance "
    "(or CHOREO_INSTANCE_ID)"
)

TRACE_HEADERS = ("traceparent", "tracestate")
SAGA_HEADER = "choreo_saga"
STEP_HEADER = "choreo_saga_step"
REASON_HEADER = "choreo_saga_reason"
BATCH_SIZE = 2000
"""Records per ``consume`` and so, at most, per transaction. Each transaction costs the broker
its markers on every partition it wrote and the tracker a wait when the commit before is slow:
at 500 the bench's tracker did 14,200-15,000 events/s, at 1,000 15,100-16,300, at 2,000
16,400-16,800 (2026-12-05, alternated). The price, only while records are waiting: a batch's
parsed states held at once (~9 KB each, twice over with the batch in flight: ~35 MB), and
its decisions committed ~0.1 s after its first record was read. Fewer waiting records are
taken after ``tick_s``, as before."""
OPEN_TRANSACTION_WAIT_S = 5.0
"""How long a restore waits for a transaction open on the changelog to end: a committed one's
marker lags by milliseconds (seconds while a leader moves); a crashed tracker's open one ends
only when the broker aborts it, and is not waited out (``read_changelog_bytes``)."""

SAGA_ID = "choreo.saga.id"
SAGA_NAME = "choreo.saga.name"
SAGA_STEP = "choreo.saga.step"
"""The step the input event settles or confirms; for a deadline, the step it undoes first."""
SAGA_DECISION = "choreo.saga.decision"
"""compensate, park, complete, compensated, wait, buffer, ignore or drop."""
SAGA_STATUS = "choreo.saga.status"
"""The saga's status after the decision."""
SAGA_ACTION = "choreo.saga.action"
"""What the tracker noted in the saga's history for this event (``choreo saga show``)."""
SAGA_REASON = "choreo.saga.reason"
EMIT_EVENT = "choreo.saga.emit"
"""Span event per emitted compensation (or parked event)."""
EVENT_TYPE = "choreo.event_type"


@dataclass
class _Batch:
    """What one transaction will write, and where to rewind if it aborts."""

    changes: dict[StateKey, SagaState | None] = field(default_factory=dict)
    emits: list[tuple[int, Emit, Context | None]] = field(default_factory=list)
    """With the trace context each emit carries (None: tracing off, copy the start's)."""
    first_offsets: dict[tuple[str, int], int] = field(default_factory=dict)
    spans: list[Span] = field(default_factory=list)
    """Decision spans, ended when the transaction committed or aborted."""
    dead_letters: list[tuple[str, Any, str, Exception]] = field(default_factory=list)
    """(DLQ topic, the record, reason code, error) for input the tracker cannot read."""
    fired: list[StateKey] = field(default_factory=list)
    """The sagas whose timers this batch took: set again from the store if it aborts."""
    pending: Mapping[StateKey, SagaState | None] = field(default_factory=dict)
    """The changes of the transaction in flight, which this batch is decided on top of."""
    unpacked: dict[StateKey, bytes] = field(default_factory=dict)
    """The committed states its records need, unpacked in one call (``StateStore.unpack_many``)."""

    def state(self, store: StateStore, key: StateKey) -> SagaState | None:
        """The saga's latest state in this batch, the batch's to change in place (the engine
        runs with ``copy=False``): the store hands out a fresh parse of the committed state.
        A state the transaction in flight holds was written to bytes when it was sent."""
        if key in self.changes:
            return self.changes[key]
        if key in self.pending:
            return self.pending[key]
        data = self.unpacked.pop(key, None)
        return store.get(*key) if data is None else store.parse(key[1], data)

    def record(
        self, partition: int, key: StateKey, outcome: Outcome, context: Context | None = None
    ) -> None:
        for line in outcome.logs:
            _log.warning("%s", line)
        if outcome.changed:
            self.changes[key] = outcome.state
        self.emits += [(partition, emit, context) for emit in outcome.emits]


_NO_TRACE: Mapping[str, str] = MappingProxyType({})
"""The trace of an event that starts no saga: the engine reads a start event's only."""
_Readers = tuple[Callable[[bytes | None], dict[str, Any]], Callable[[bytes | None], Event]]
"""An event type's payload reader and model reader (``Codec.payload_decoder``, ``decoder``)."""


@dataclass(slots=True)
class _Read:
    """A record read as far as it goes without its saga's state: a batch is read whole first,
    so that the states it needs are unpacked in one call."""

    message: Any
    key: StateKey
    incoming: Incoming
    event_type: str
    own: bool
    """One of this tracker's compensations come back on an input topic: no span of its own."""


_Wire = list[tuple[str, str | bytes | None]]
"""Headers as produced: a foreign record's may have a null value, dead-lettered as it came."""
_Record = tuple[str, bytes | None, bytes | None, int, _Wire | None]
"""A record to produce in the transaction: topic, value, key, partition (-1: the partitioner's
choice) and headers. Given to ``produce`` by position, not as a dict of keywords: ~0.3 us less
a record in the commit thread, whose produce calls hold the GIL the loop thread waits for, and
~0.1 us less to build in the loop (2026-12-05, 3 KB values)."""


@dataclass
class _Sent:
    """A batch whose transaction commits in the background, with what memory takes from it
    once committed (its states as written, packed, and their wake times): the next batch
    changes the state objects in place meanwhile."""

    batch: _Batch
    encoded: dict[StateKey, bytes | None]
    wakes: dict[StateKey, float | None]
    done: Future[dict[StateKey, bytes | None]]
    """Set once the transaction committed, to the states packed for memory
    (:meth:`StateStore.pack_bodies`)."""
    watch: CallWatch
    """The transaction's call in progress, to give it up once hung."""
    offsets: list[ck.TopicPartition]
    """The input positions it commits."""


class _SagaTracing:
    """The tracker's spans: one per decision, over the runtime's messaging attributes."""

    def __init__(self, engine: Engine, provider: trace.TracerProvider, group_id: str) -> None:
        self._prefix = f"saga-tracker {engine.name}"
        self._runtime = Tracing(self._prefix, provider, group_id)
        self._tracer = self._runtime.tracer
        self._saga = engine.name
        self._engine = engine
        self._parked = {
            d.parked.event_type for d in engine.versions.values() if d.parked is not None
        }

    def consumed(
        self,
        message: Any,
        headers: Headers,
        event_type: str,
        saga_id: str,
        event_id: str,
        state: SagaState | None,
    ) -> tuple[Span, Context]:
        """Started before the engine decides: child of the record's producer.

        A record without trace context (a producer that is not traced) continues the saga's
        trace instead, as a child of its start event's context: one saga, one trace.
        """
        parent = carrier.extract(headers)
        if state is not None and state.trace and not _has_span(parent):
            parent = _stored(state)
        topic, partition = message.topic(), message.partition()
        attributes = self._runtime.messaging_attributes(topic, partition, "track")
        attributes[OFFSET] = message.offset()
        key = message.key()
        if key is not None:
            attributes[KEY] = key.decode("utf-8", "replace")
        attributes[MESSAGE_ID] = event_id
        attributes[EVENT_TYPE] = event_type
        self._saga_attributes(attributes, saga_id)
        step = self._engine.step_of(state, event_type)
        if step is not None:
            attributes[SAGA_STEP] = step
        name = f"{self._prefix} {short_type(event_type)}"
        span = self._tracer.start_span(name, parent, SpanKind.CONSUMER, attributes)
        return span, trace.set_span_in_context(span, parent)

    def deadline(self, state: SagaState) -> tuple[Span, Context]:
        """No record to follow: child of the start event's context, stored with the state."""
        parent = _stored(state)
        attributes: dict[str, AttributeValue] = {}
        self._saga_attributes(attributes, state.saga_id)
        span = self._tracer.start_span(
            f"{self._prefix} deadline", parent, SpanKind.INTERNAL, attributes
        )
        return span, trace.set_span_in_context(span, parent)

    def _saga_attributes(self, attributes: dict[str, AttributeValue], saga_id: str) -> None:
        attributes[CORRELATION_ID] = saga_id
        attributes[SAGA_ID] = saga_id
        attributes[SAGA_NAME] = self._saga

    def decided(
        self,
        span: Span,
        was: SagaStatus | None,
        outcome: Outcome,
        event_id: str | None = None,
    ) -> None:
        """``was``: the saga's status before the decision (None: not started)."""
        after = outcome.state
        span.set_attribute(SAGA_DECISION, _decision(was, outcome, self._parked, event_id))
        if after is not None:
            span.set_attribute(SAGA_STATUS, after.status.value)
            action = _action(after, event_id)
            if action is not None:
                span.set_attribute(SAGA_ACTION, action)
        if event_id is None and outcome.emits:
            span.set_attribute(SAGA_STEP, outcome.emits[0].step)
        for emit in outcome.emits:
            span.add_event(
                EMIT_EVENT,
                {
                    EVENT_TYPE: emit.event.event_type,
                    MESSAGE_ID: emit.event_id,
                    SAGA_STEP: emit.step,
                    SAGA_REASON: emit.reason,
                },
            )


def _stored(state: SagaState) -> Context:
    """The start event's trace context, as stored with the saga."""
    return carrier.extract([(name, value.encode()) for name, value in state.trace.items()])


def _has_span(context: Context) -> bool:
    return trace.get_current_span(context).get_span_context().is_valid


def _decision(
    was: SagaStatus | None, outcome: Outcome, parked: set[str], event_id: str | None
) -> str:
    """One word for what the tracker did with an input (or a deadline), for the span."""
    after = outcome.state
    if not outcome.changed:
        return "ignore"
    if after is None:
        return "drop"
    if any(emit.event.event_type in parked for emit in outcome.emits):
        return "park"
    if outcome.emits:
        return "compensate"
    if after.status is SagaStatus.WAITING:
        return "buffer"
    if after.status is not was and after.status is SagaStatus.COMPLETED:
        return "complete"
    if after.status is not was and after.status is SagaStatus.COMPENSATED:
        return "compensated"
    action = _action(after, event_id)
    if action is not None and action.startswith("ignored"):
        return "ignore"
    return "wait"


def _action(state: SagaState, event_id: str | None) -> str | None:
    """The latest history line about ``event_id`` (or the latest line, for a deadline)."""
    for entry in reversed(state.history):
        if event_id is None or entry.event_id == event_id:
            return entry.action
    return None


def _end_spans(spans: list[Span], committed: bool) -> None:
    for span in spans:
        if not committed:
            span.set_status(
                Status(StatusCode.ERROR, "transaction aborted: the batch is decided again")
            )
        span.end()


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
        session_timeout_ms: int | None = None,
        tracer_provider: trace.TracerProvider | None = None,
    ) -> None:
        self.engine = Engine(definitions)
        self._session: SessionWatch  # the consumer's, made with it in _join
        self.catalog = catalog or Catalog.load(config.schemas_dir)
        self.topology: Topology = plan(definitions, self.catalog)
        # Registry-framed inputs are read, and registry-format topics written, as services do.
        self.codec = Codec(self.catalog, registry=registry_for(config, self.catalog))
        self.config = config
        self.instance = instance or config.instance()
        stable = instance is not None or config.static_membership
        self._static_id = f"{tracker_name(self.engine.name)}-{self.instance}" if stable else None
        self.tick_s = tick_s
        self.store = StateStore()
        self.timers = Timers(self.store)
        self._gate = ReadGate(self.topology.inputs)
        self.group_id = tracker_name(self.engine.name)
        self._settings = librdkafka_settings(config.kafka)
        self._encoder = EventEncoder(self.catalog, self.codec, self.group_id)
        self._transaction_timeout_ms = transaction_timeout_ms
        self._request_s = request_timeout_s(self._producer_settings())
        """How late a healthy send-offsets call may return (``txn_calls``)."""
        self._begun_at = time.monotonic()
        """When the last transaction began (commit thread): a fence after it was open for its
        whole timeout is the broker expiring it, not a twin (``_renew``)."""
        self._session_timeout_ms = session_timeout_ms or round(config.session_timeout_s * 1000)
        self._last_tick = 0.0
        self._consumer: ck.Consumer | None = None
        self._producer: ck.Producer | None = None
        self._sent: _Sent | None = None
        self._parked: dict[int, tuple[int, dict[str, bytes]]] = {}
        """Partitions revoked by a rebalance, with the changelog's end then (its last stable
        offset) and their states: those assigned back at its end catch up from there instead
        of restoring (``_park``)."""
        self._parked_as: tuple[int, str] | None = None
        """The group generation and member id they were revoked in."""
        self._closing = False
        self._settled: set[int] = set()
        """Partitions whose restore came after their previous owner's transactions settled
        (``_await_open_transactions``): only these may be parked."""
        self._committed: dict[tuple[str, int], int] = {}
        """The group's committed offset of each owned input partition, as of the assignment
        and this tracker's commits since (``_offsets``)."""
        self._suspect = False
        """A transaction failed or was given up since the last rebalance: memory may lack
        states the broker committed after all, so the next one parks nothing."""
        self._assigned_at = time.monotonic()
        self._source = self.group_id.encode()
        self._starts = frozenset(d.start.event_type for d in self.engine.versions.values())
        self._readers: dict[str, _Readers] = {}
        """Per event type: the codec's payload reader, and its model reader (``Decoded``)."""
        self._hand_back, self._malloc_line = malloc_tuning(config.tune_gc)
        """Whether a restore fixes glibc's thresholds (process-wide) around itself."""
        self._tracing = (
            None
            if tracer_provider is None
            else _SagaTracing(self.engine, tracer_provider, self.group_id)
        )

    # -- lifecycle --------------------------------------------------------------------------

    def start(self) -> None:
        """Create topics, check partition counts, fence predecessors, subscribe."""
        transport = ConfluentTransport(self.config.kafka)
        asyncio.run(transport.ensure_topics(self.topology.topic_configs(self.catalog)))
        self._producer = self._new_producer()
        metadata = self._producer.list_topics(timeout=15)
        check_broker(
            self.topology,
            {name: len(t.partitions) for name, t in metadata.topics.items() if t.error is None},
        )
        self._init_transactions(self._producer)
        self._join()
        _log.info("%s", self._malloc_line)
        _log.info(
            "saga tracker '%s' v%s (instance %s): reading %s; state in %s",
            self.engine.name,
            ", v".join(str(v) for v in sorted(self.engine.versions)),
            self.instance,
            ", ".join(self.topology.inputs),
            self.topology.changelog,
        )

    def _join(self) -> None:
        """A consumer in the tracker's group; its assignment restores the states it reads."""
        self._session = SessionWatch()
        self._consumer = ck.Consumer(
            {
                **self._settings,
                "group.id": self.group_id,
                "client.id": f"{self.group_id}-{self.instance}",
                "isolation.level": "read_committed",
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
                "partition.assignment.strategy": "range",
                # Static with a stable instance id: a restarted instance takes its partitions
                # back at once; a dead one's move to the others after the session timeout.
                **({"group.instance.id": self._static_id} if self._static_id else {}),
                "session.timeout.ms": self._session_timeout_ms,
                "logger": self._session,
            }
        )
        self._consumer.subscribe(
            list(self.topology.inputs),
            on_assign=self._on_assign,
            on_revoke=self._on_revoke,
            on_lost=self._on_lost,
        )

    def _rejoin(self, why: str) -> None:
        """Replace a consumer fenced by the echo of its own session timeout (``SessionWatch``):
        the transaction in flight settles, memory forgets every partition, and the new consumer
        reads on from the committed offsets and restores the committed states, as a restarted
        tracker would."""
        _log.warning(
            "saga tracker '%s' instance %s: %s, just after its group session timed out "
            "(librdkafka #3437): a new consumer joins and reads on from the last commit",
            self.engine.name,
            self.instance,
            why,
        )
        consumer, self._consumer = self._consumer, None
        assert consumer is not None
        self._settle()  # an abort rewinds nothing: the new consumer starts at the commits
        self._forget(self.store.partitions)
        try:
            consumer.close()
        except (ck.KafkaException, RuntimeError) as exc:
            _log.warning("saga tracker '%s' closing its fenced consumer: %s", self.engine.name, exc)
        self._parked.clear()
        self._suspect = False
        self._join()

    def _new_producer(self) -> ck.Producer:
        return ck.Producer(self._producer_settings())

    def _producer_settings(self) -> dict[str, Any]:
        return {
            **self._settings,
            "transactional.id": transactional_id(self.group_id, self.instance),
            "transaction.timeout.ms": self._transaction_timeout_ms,
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 5,
            # A batch's states are one saga's JSON many times over: lz4 writes ~9x fewer
            # bytes to the changelog for ~2 us of librdkafka's CPU a state (zstd: ~20x
            # for ~10 us), so the broker, its replicas and every restore read less.
            "compression.type": "lz4",
            "partitioner": "murmur2_random",
            "client.id": f"{self.group_id}-{self.instance}",
        }

    def _init_transactions(self, producer: ck.Producer) -> None:
        """Fence predecessors (made again while the coordinator loads or moves, up to a
        minute); a refusal names the ACL (a prefix: ids end with the instance)."""
        tid = transactional_id(self.group_id, self.instance)
        what = f"saga tracker '{self.engine.name}' starting transactions as {tid}"
        try:
            resumed(what, producer.init_transactions, timeout_s=30, until=time.monotonic() + 60)
        except ck.KafkaException as exc:
            error = exc.args[0] if exc.args else None
            if isinstance(error, ck.KafkaError) and error.code() in AUTHORIZATION_ERRORS:
                needed = f"WRITE on transactional_id prefix {transactional_prefix(self.group_id)}"
                raise denied(f"{what} (it needs {needed})", error) from None
            detail = error.str() if isinstance(error, ck.KafkaError) else str(exc)
            raise TransportError(f"{what}: {detail}") from None

    def run(self, stop: threading.Event, after_start: Callable[[], object] | None = None) -> None:
        """Start, call ``after_start`` (``choreo saga run`` tunes the collector there: it is
        process-wide), then process until ``stop`` is set; the transaction in hand always
        finishes."""
        self.start()
        if after_start is not None:
            after_start()
        try:
            while not stop.is_set():
                self.poll_once()
        finally:
            self.close()

    def close(self) -> None:
        """Finish the transaction in flight, then leave the group: a commit that failed
        (a fence) still lets the consumer go, so the partitions move at once."""
        self._closing = True
        try:
            self._settle()
        finally:
            self._release()

    def _release(self) -> None:
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None
        if self._producer is not None:
            try:
                self._producer.flush(10)
            except ck.KafkaException as exc:  # a failed producer: the error that stopped us shows
                _log.warning("saga tracker '%s' closing its producer: %s", self.engine.name, exc)
            self._producer = None

    # -- rebalance --------------------------------------------------------------------------

    def _on_assign(self, consumer: ck.Consumer, partitions: list[ck.TopicPartition]) -> None:
        self._assigned_at = time.monotonic()
        parked_as, self._parked_as = self._parked_as, None
        if parked_as is None or group_membership(consumer) != (parked_as[0] + 1, parked_as[1]):
            # Not the very next generation of the same member: a generation may have formed
            # without this one, and given its partitions to another member meanwhile.
            self._parked.clear()
        self._await_open_transactions(consumer, partitions)
        self.restore({tp.partition for tp in partitions})

    def _await_open_transactions(
        self, consumer: ck.Consumer, partitions: list[ck.TopicPartition]
    ) -> None:
        """Before the restore, wait (as the committed offsets' fetch does, read_committed)
        for a transaction the partitions' previous owner left open with its offsets sent: it
        may still commit, and the restore, which stops where the open transaction starts,
        would miss its states while reading resumes after its input."""
        if not partitions:
            return
        try:
            committed = consumer.committed(
                partitions, timeout=3 * self._transaction_timeout_ms / 1000
            )
            self._committed.update({(tp.topic, tp.partition): tp.offset for tp in committed})
            failed = {tp.partition for tp in committed if tp.error is not None}
            self._settled |= {tp.partition for tp in partitions} - failed
        except ck.KafkaException as exc:
            _log.warning(
                "saga tracker '%s': the committed offsets of %s are not settled (%s): restoring "
                "anyway",
                self.engine.name,
                sorted({tp.partition for tp in partitions}),
                exc,
            )

    def restore(self, partitions: set[int]) -> int:
        """Load the committed states of ``partitions`` this tracker does not hold yet, and arm
        their timers; returns how many sagas that was. Those it held until the rebalance just
        ended are read from where they were then (``_park``); other parked ones moved away."""
        numbers = partitions - self.store.partitions
        parked, self._parked = self._parked, {}
        resume = {number: parked[number] for number in numbers & parked.keys()}
        if not numbers:
            return 0
        started = time.monotonic()
        store, engine = self.store, self.engine
        held_stranded: dict[bytes, str] = {}
        read = unreadable = 0

        def keep(data: bytes) -> bytes:
            """Pack a changelog record with its wake time, read without a parse (``peek``).
            A record that is not a state is held as it is, with no timer: it is its saga's
            latest, so the saga's events go to the dead-letter topic (``_track``)."""
            nonlocal read, unreadable
            read += 1
            try:
                found = timing(data)
            except UnreadableState:
                unreadable += 1
                return store.pack(data)
            packed = store.pack(data, engine.wake_at(found))
            why = engine.stranded(found)
            if why is not None:
                held_stranded[packed] = why  # the saga's record unless a later one replaces it
            return packed

        changelog = self.topology.changelog
        with handing_back(self._hand_back):  # its fetches freed in librdkafka's thread too
            restored = read_changelog_bytes(
                self._settings, changelog, numbers, keep, resume, settle_s=OPEN_TRANSACTION_WAIT_S
            )
            stranded: list[tuple[str, str]] = []
            for number, states in restored.items():
                store.load(number, states)
                self.timers.load(number)
                if held_stranded:
                    stranded += [
                        (k, held_stranded[v]) for k, v in states.items() if v in held_stranded
                    ]
            held_stranded.clear()
            count = sum(len(s) for s in restored.values())
            if count:
                hand_back_freed_memory()
        kept = [n for n, (_, states) in resume.items() if restored[n] is states]  # not read anew
        _log.info(
            "restored %d saga(s) of partition(s) %s in %.2fs: %d record(s) read%s",
            count,
            sorted(numbers),
            time.monotonic() - started,
            read,
            f", partition(s) {sorted(kept)} kept through the rebalance" if kept else "",
        )
        if unreadable:
            _log.warning(
                "%d changelog record(s) of %s read in this restore are not saga states (written "
                "by something else?): while one is its saga's latest, the saga's events go to "
                "the dead-letter topic as unreadable-state",
                unreadable,
                changelog,
            )
        if stranded:
            saga_id, why = stranded[0]
            _log.warning(
                "%d restored saga(s) cannot move (e.g. %s: %s): load the definition they started "
                "with, or each is forgotten %s after its last change",
                len(stranded),
                saga_id,
                why,
                self.engine.latest.retention,
            )
        return count

    def _on_revoke(self, consumer: ck.Consumer, partitions: list[ck.TopicPartition]) -> None:
        # The transaction in flight commits (or aborts) with the generation it was sent in,
        # and its states reach memory, before the partitions go.
        self._settle()
        numbers = {tp.partition for tp in partitions}
        # A session timed out since the assignment: the partitions may have been another
        # member's meanwhile, whatever librdkafka calls their revocation.
        if (
            not self._suspect
            and not self._closing
            and self._session.last_timeout_at < self._assigned_at
        ):
            self._park(consumer, numbers)
        self._suspect = False
        self._forget(numbers)

    def _on_lost(self, consumer: ck.Consumer, partitions: list[ck.TopicPartition]) -> None:
        """Partitions other members may have owned for a while: forgotten, never parked."""
        self._settle()
        self._parked.clear()
        self._suspect = False  # memory holds nothing it could be wrong about any more
        self._forget({tp.partition for tp in partitions})

    def _park(self, consumer: ck.Consumer, numbers: set[int]) -> None:
        """Set aside the states of revoked partitions with the changelog's end: the range
        assignor revokes every partition at every rebalance, and most come back to the same
        instance, which then reads only what was written since instead of the whole changelog
        (a join or a leave used to stall every instance for a full restore: ~4 s per 100,000
        sagas). Until the revocation completes they are still this instance's, so everything
        before that end is its own, already held. The end is the last stable offset (this
        consumer reads committed): a transaction whose commit marker is not written yet is
        read again, the same states. Only states assigned back to the same member in the very
        next generation are used (``_on_assign``); a partition lost (``_on_lost``), maybe owned
        by another member meanwhile, is never parked."""
        membership = group_membership(consumer)
        if membership is None or membership[0] < 0:
            return  # no longer a member: expelled while the revocation was pending
        for number in sorted(numbers & self.store.partitions & self._settled):
            try:
                _, end = consumer.get_watermark_offsets(
                    ck.TopicPartition(self.topology.changelog, number), timeout=2, cached=False
                )
            except ck.KafkaException as exc:  # restored in full if assigned back
                _log.info("partition %d: its changelog's end is unknown (%s)", number, exc)
                break
            states = self.store.take(number)
            if end >= 0 and states is not None:
                self._parked[number] = (end, states)
        if group_membership(consumer) != membership:
            self._parked.clear()  # expelled meanwhile
        self._parked_as = membership

    def _forget(self, numbers: set[int]) -> None:
        self._gate.forget(numbers)
        self._settled -= numbers
        for key in [key for key in self._committed if key[1] in numbers]:
            del self._committed[key]
        for number in numbers:
            self.store.drop(number)
            self.timers.drop_partition(number)

    # -- the loop ---------------------------------------------------------------------------

    def poll_once(self) -> None:
        consumer = self._consumer
        assert consumer is not None
        messages = consumer.consume(BATCH_SIZE, timeout=self.tick_s)
        batch = _Batch(pending={} if self._sent is None else self._sent.batch.changes)
        try:
            read = [found for message in messages if (found := self._read(message, batch))]
            batch.unpacked = self.store.unpack_many(
                {found.key for found in read if found.key not in batch.pending}
            )
            for found in read:
                self._track(found, batch)
            now = time.time()
            if now - self._last_tick >= self.tick_s:
                self._last_tick = now
                self._fire_due(batch, now)
        except FencedByItself as fenced:
            _end_spans(batch.spans, False)
            self._rejoin(str(fenced))
            return
        except BaseException:
            _end_spans(batch.spans, False)
            raise
        if not self._settle(later=batch):
            _end_spans(batch.spans, False)
        elif batch.changes or batch.emits or batch.first_offsets:
            self._send(batch)
        else:
            _end_spans(batch.spans, True)

    def _read(self, message: Any, batch: _Batch) -> _Read | None:
        """None: not this tracker's to decide (an error, another consumer's event, a partition
        it does not own) or dead-lettered here."""
        error = message.error()
        if error is not None and error.code() in AUTHORIZATION_ERRORS:
            raise denied(f"saga tracker '{self.engine.name}' reading {message.topic()}", error)
        if error is not None and is_fatal(error):
            text = error.str()
            twin = self._session.twin_fence(text)
            raise TransportError(
                f"saga tracker '{self.engine.name}' instance {self.instance} stopped: {text}"
                + (SAME_INSTANCE if twin else "")
            )
        if error is not None:
            _log.warning("consumer: %s", error.str())
            return None
        topic, partition, offset = message.topic(), message.partition(), message.offset()
        batch.first_offsets.setdefault((topic, partition), offset)
        if not self.store.owns(partition):
            return None
        headers = dict(message.headers() or [])
        try:
            value = message.value()
            event_type = self.codec.event_type_of(value)
            readers = self._readers.get(event_type)
            if readers is None:
                if not self.engine.accepts(event_type):
                    return None  # another consumer's event on a topic the saga reads
                readers = self._readers[event_type] = self._bind(event_type)
            read_payload, read_model = readers
            event = Decoded(event_type, read_payload(value), value, read_model)
        except (DecodeError, SchemaError) as exc:
            reason = exc.reason if isinstance(exc, DecodeError) else "incompatible"
            self._dead_letter(batch, message, reason, exc)
            return None
        try:
            saga_id = _header_text(headers, _headers.CORRELATION)
            event_id = _header_text(headers, _headers.ID)
        except DecodeError as exc:
            self._dead_letter(batch, message, exc.reason, exc)
            return None
        if saga_id is None or event_id is None:
            missing = _headers.CORRELATION if saga_id is None else _headers.ID
            unreadable = DecodeError(
                "missing-header",
                f"{event_type} has no {missing} header: the tracker cannot tell which saga "
                "or which event it is",
            )
            self._dead_letter(batch, message, unreadable.reason, unreadable)
            return None
        source = headers.get(_headers.SOURCE)
        start_trace = _NO_TRACE
        if event_type in self._starts:  # the engine keeps a start event's trace only
            start_trace = {
                name: value
                for name in TRACE_HEADERS
                if (value := _headers.lenient_text(headers.get(name))) is not None
            }
        incoming = Incoming(
            saga_id,
            event,
            event_id,
            start_trace,
            event_time(headers.get(_headers.TIME)),
            _headers.lenient_text(source),  # names an abort's sender
        )
        own = source == self._source
        return _Read(message, (partition, saga_id), incoming, event_type, own)

    def _track(self, found: _Read, batch: _Batch) -> None:
        key, message, incoming = found.key, found.message, found.incoming
        try:
            state = batch.state(self.store, key)
        except DecodeError as exc:
            self._dead_letter(batch, message, exc.reason, exc)
            return
        tracing = self._tracing
        if tracing is None or found.own:
            # Its own compensations come back on its input topics: no span for those.
            outcome = self.engine.handle(state, incoming, time.time(), copy=False)
            batch.record(key[0], key, outcome)
            return
        span, context = tracing.consumed(
            message, message.headers() or [], found.event_type, key[1], incoming.event_id, state
        )
        batch.spans.append(span)
        was = None if state is None else state.status
        outcome = self.engine.handle(state, incoming, time.time(), copy=False)
        tracing.decided(span, was, outcome, incoming.event_id)
        batch.record(key[0], key, outcome, context)

    def _bind(self, event_type: str) -> _Readers:
        model = self.engine.models[event_type]
        return self.codec.payload_decoder(model), self.codec.decoder(model)

    def _dead_letter(self, batch: _Batch, message: Any, reason: str, error: Exception) -> None:
        topic, partition, offset = message.topic(), message.partition(), message.offset()
        _log.warning(
            "%s[%d]@%d cannot be tracked (%s): %s; sent to %s",
            topic,
            partition,
            offset,
            reason,
            error,
            self.topology.dead_letters(topic),
        )
        batch.dead_letters.append((self.topology.dead_letters(topic), message, reason, error))

    def _fire_due(self, batch: _Batch, now: float) -> None:
        fired = self.timers.due(now)
        changed = [
            key
            for key, state in batch.changes.items()
            if state is not None and (at := self.engine.wake_at(state)) is not None and at <= now
        ]
        consumer = self._consumer
        assert consumer is not None
        ready = self._gate.ready(consumer, {key[0] for key in (*fired, *changed)})
        for key in fired:
            if key[0] not in ready:
                self.timers.set(key, now)  # events may be waiting on a topic: a later tick
        batch.fired = [key for key in fired if key[0] in ready]
        due = [key for key in batch.fired if key not in batch.changes]
        due += [key for key in changed if key[0] in ready]
        tracing = self._tracing
        for key in due:
            try:
                state = batch.state(self.store, key)
            except DecodeError as exc:  # its timer is not armed again: it has no valid one
                _log.warning("not firing its deadline: %s", exc)
                continue
            if state is None:
                continue
            if tracing is None:
                batch.record(key[0], key, self.engine.tick(state, now, copy=False))
                continue
            span, context = tracing.deadline(state)
            batch.spans.append(span)
            was = state.status
            outcome = self.engine.tick(state, now, copy=False)
            tracing.decided(span, was, outcome)
            batch.record(key[0], key, outcome, context)

    def _send(self, batch: _Batch) -> None:
        """Start the batch's transaction in the background. Everything that reads or changes
        the tracker's objects (states to JSON, emits to records, the consumer's positions) is
        done here, so the commit thread touches only the producer."""
        consumer = self._consumer
        assert consumer is not None
        encoded = {
            key: None if state is None else state.to_bytes() for key, state in batch.changes.items()
        }
        changelog = self.topology.changelog
        records: list[_Record] = [
            (changelog, value, saga_id.encode(), partition, None)
            for (partition, saga_id), value in encoded.items()
        ]
        records += [self._emit_record(emit, context) for _, emit, context in batch.emits]
        # Input order, as each topic's records arrived: a batch dead-letters what it cannot
        # read in its first pass and unreadable states in its second.
        dead_letters = sorted(batch.dead_letters, key=lambda dead: _position(dead[1]))
        records += [self._dead_letter_record(*dead) for dead in dead_letters]
        offsets = self._offsets(consumer)
        metadata = consumer.consumer_group_metadata() if offsets else None
        wakes = {
            key: None if state is None else self.engine.wake_at(state)
            for key, state in batch.changes.items()
        }
        producer = self._producer
        assert producer is not None
        watch = CallWatch(self._request_s)
        commit = partial(self._transact, producer, records, encoded, offsets, metadata, watch)
        done = started(f"{self.group_id}-commit", commit)
        self._sent = _Sent(batch, encoded, wakes, done, watch, offsets)

    def _transact(
        self,
        producer: ck.Producer,
        records: list[_Record],
        encoded: Mapping[StateKey, bytes | None],
        offsets: list[ck.TopicPartition],
        metadata: object,
        watch: CallWatch,
    ) -> dict[StateKey, bytes | None]:
        """One batch's transaction, in the commit thread (a timed-out call goes on); returns
        its states packed for memory, packed before the transaction begins: a packing that
        fails stops the tracker with no transaction left open."""
        what = f"saga tracker '{self.engine.name}' transaction"
        bodies = self.store.pack_bodies(encoded)
        self._begun_at = time.monotonic()
        producer.begin_transaction()
        produce = producer.produce
        for topic, value, key, partition, headers in records:
            if headers is None:
                produce(topic, value, key, partition)
            else:
                produce(topic, value, key, partition, headers=headers)
        if offsets:
            send = producer.send_offsets_to_transaction
            resumed(f"{what} send offsets", send, offsets, metadata, watch=watch, may_hang=True)
        resumed(f"{what} commit", producer.commit_transaction, watch=watch)
        return bodies

    def _settle(self, later: _Batch | None = None) -> bool:
        """Wait for the transaction in flight; True once it committed (or none was), and
        ``later`` may be sent. Aborted: its batch is rewound, and so is ``later``, which was
        decided on top of it; given up, ``later`` is rewound even if it had committed."""
        sent, self._sent = self._sent, None
        if sent is None:
            return True
        try:
            bodies = settle(sent.done, sent.watch)
        except Hung as hung:
            self._suspect = True
            if later is not None:
                self._rewind(later)
            self._replace_producer(str(hung))
            if self._took(sent):
                _log.warning(
                    "saga tracker '%s': the transaction given up had committed (its input "
                    "offsets are the group's): its batch is kept, not read again",
                    self.engine.name,
                )
                self._taken(sent, self.store.pack_bodies(sent.encoded))
                return False  # ``later`` was decided on top of it, and is read again
            self._rewind(sent.batch)
            _end_spans(sent.batch.spans, False)
            return False
        except ck.KafkaException as exc:
            if later is not None:
                self._rewind(later)  # first: where both read a partition, the earlier wins
            self._recover(exc, sent.batch)
            _end_spans(sent.batch.spans, False)
            return False
        self._taken(sent, bodies)
        return True

    def _took(self, sent: _Sent) -> bool:
        """Whether a transaction given up (its commit call never returned) committed all the
        same: its input offsets are the group's committed ones. The new producer's
        ``init_transactions`` returned once the coordinator ended it either way, so the answer
        is settled; reading it again would handle its batch twice. Only offsets it moved from
        known ones can tell: one that moved none (deadlines alone, nothing read since) is taken
        as aborted, as is one the broker cannot be asked about now; its deadlines fire again,
        their compensations sent again under the same ids."""
        before = [self._committed.get((tp.topic, tp.partition)) for tp in sent.offsets]
        moved = [tp for tp, was in zip(sent.offsets, before, strict=True) if was != tp.offset]
        consumer = self._consumer
        if not moved or None in before or consumer is None:
            return False  # nothing moved, or from where is unknown: an abort looks the same
        try:
            found = consumer.committed(moved, timeout=3 * self._transaction_timeout_ms / 1000)
        except ck.KafkaException as exc:
            _log.warning("the committed offsets are unknown (%s): reading the batch again", exc)
            return False
        now = {(tp.topic, tp.partition): tp.offset for tp in found if tp.error is None}
        return all(now.get((tp.topic, tp.partition)) == tp.offset for tp in moved)

    def _taken(self, sent: _Sent, bodies: dict[StateKey, bytes | None]) -> None:
        """A committed transaction's states into memory, with their timers."""
        # A partition that moved away meanwhile is skipped: its new owner restores.
        for key, was, at in self.store.apply(sent.encoded, bodies, sent.wakes):
            self.timers.moved(key, was, at)
        self._committed.update({(tp.topic, tp.partition): tp.offset for tp in sent.offsets})
        for _, emit, _ in sent.batch.emits:
            _log.info(
                "saga %s: emitted %s for step '%s' (%s)",
                emit.correlation_id,
                emit.event.event_type,
                emit.step,
                emit.reason,
            )
        _end_spans(sent.batch.spans, True)

    def _offsets(self, consumer: ck.Consumer) -> list[ck.TopicPartition]:
        """The position of every owned input partition: a timer-only transaction carries them
        too, so an instance that lost its partitions cannot commit stale decisions. A partition
        read from nothing since its assignment or a rewind has no position: its committed
        offset is sent again, else a transaction of deadlines alone would carry no offsets,
        and nothing would fence it."""
        assigned = consumer.assignment()
        positions = consumer.position(assigned) if assigned else []
        committed = self._committed
        offsets = []
        for tp in positions:
            if tp.offset >= 0:
                offsets.append(tp)  # position() made it for this call: sent as it is
            elif (offset := committed.get((tp.topic, tp.partition), -1)) >= 0:
                offsets.append(ck.TopicPartition(tp.topic, tp.partition, offset))
        return offsets

    def _emit_record(self, emit: Emit, context: Context | None) -> _Record:
        """``context``: the decision span's (tracing on), else the start event's trace headers."""
        record = self._encoder.prepare(
            emit.event,
            correlation_id=emit.correlation_id,
            causation_id=emit.causation_id,
            event_id=emit.event_id,
        )
        headers: Headers = list(record.headers)
        if context is None:
            headers += [(name, value.encode()) for name, value in emit.trace.items()]
        else:
            carrier.inject(headers, context)
        headers += [
            (SAGA_HEADER, self.engine.name.encode()),
            (STEP_HEADER, emit.step.encode()),
            (REASON_HEADER, emit.reason.encode()),
        ]
        wire: _Wire = list(headers)
        return record.topic, record.value, record.key, -1, wire

    def _dead_letter_record(
        self, topic: str, message: Any, reason: str, error: Exception
    ) -> _Record:
        _, timestamp = message.timestamp()
        failure = failure_headers(
            reason,
            message.topic(),
            message.partition(),
            message.offset(),
            timestamp,
            self.group_id.encode(),
            error,
            attempts=1,
        )
        wire: _Wire = [*(message.headers() or []), *failure]
        return topic, message.value(), message.key(), -1, wire

    def _renew(self, failure: ck.KafkaException) -> None:
        """Replace a producer that cannot abort (fatal, or stuck): the new one's
        ``init_transactions`` bumps the epoch and closes the open transaction. A fence (another
        live tracker took this instance's transactional id) stops this one instead: renewing
        would fence that one back. Unless the transaction had been open for its whole
        ``transaction.timeout.ms`` (the process paused, stopped or starved mid-commit): then the
        broker expired it and bumped the epoch, which librdkafka reports as the same fence."""
        error = failure.args[0] if failure.args else None
        fence = isinstance(error, ck.KafkaError) and error.fatal() and is_fence(error)
        expired = time.monotonic() - self._begun_at >= self._transaction_timeout_ms / 1000
        detail = error.str() if isinstance(error, ck.KafkaError) else str(failure)
        if fence and not expired:
            raise TransportError(
                f"saga tracker '{self.engine.name}' instance {self.instance} was fenced: "
                f"{detail}{SAME_INSTANCE}"
            ) from None
        if fence:
            detail = f"its transaction expired, open past transaction.timeout.ms ({detail})"
        old = self._producer
        self._replace_producer(detail if fence else f"its producer cannot abort ({detail})")
        if old is not None:
            old.purge()
            # Served here, the fatal error is raised once more: it was handled above.
            with contextlib.suppress(ck.KafkaException):
                old.poll(0)

    def _replace_producer(self, why: str) -> None:
        """A new producer takes over the transactional id: its ``init_transactions`` bumps the
        epoch, so the old one can commit nothing, and closes the open transaction."""
        _log.warning(
            "saga tracker '%s': %s; a new producer takes over its transactional id",
            self.engine.name,
            why,
        )
        self._producer = self._new_producer()
        self._init_transactions(self._producer)

    def _recover(self, exc: ck.KafkaException, batch: _Batch) -> None:
        """Abort and rewind, so the batch is decided again from the committed state."""
        self._suspect = True
        producer = self._producer
        assert producer is not None
        error = exc.args[0] if exc.args else None
        if isinstance(error, ck.KafkaError) and error.code() in AUTHORIZATION_ERRORS:
            raise denied(f"saga tracker '{self.engine.name}' transaction", error)
        _log.warning("transaction aborted, re-reading the batch: %s", exc)
        if isinstance(error, ck.KafkaError) and error.fatal():
            self._renew(exc)
        else:
            abort = producer.abort_transaction
            try:
                resumed(f"saga tracker '{self.engine.name}' transaction abort", abort, timeout_s=30)
            except ck.KafkaException as abort_error:
                self._renew(abort_error)
        self._rewind(batch)

    def _rewind(self, batch: _Batch) -> None:
        """Seek back to the batch's first records, and arm the deadlines it took again."""
        consumer = self._consumer
        if consumer is None:
            return  # rejoining: the new consumer reads from the commits, restores the deadlines
        for (topic, partition), offset in batch.first_offsets.items():
            if self.store.owns(partition):
                consumer.seek(ck.TopicPartition(topic, partition, offset))
        # The deadlines this batch took were not acted on: arm them again from the store.
        for key in batch.fired:
            state = self.store.get(*key) if self.store.owns(key[0]) else None
            if state is not None:
                self.timers.set(key, self.engine.wake_at(state))


def _position(message: Any) -> tuple[str, int, int]:
    return message.topic(), message.partition(), message.offset()


def _header_text(headers: dict[str, Any], name: str) -> str | None:
    """A header the tracker keys on; bytes that are not UTF-8 park the record (``bad-header``)
    instead of stopping the tracker on a foreign producer's record."""
    value: bytes | str | None = headers.get(name)
    if value is None or isinstance(value, str):
        return value
    try:
        return value.decode()
    except UnicodeDecodeError:
        raise DecodeError(
            "bad-header", f"header {name} is not UTF-8 text: {value[:16]!r}"
        ) from None
