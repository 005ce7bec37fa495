"""The yardstick of choreo's saga tracker: the exactly-once tracker a competent engineer would
hand-write for ``bench/saga.py``'s order saga, on confluent-kafka (issue 17).

The same guarantee as choreo's: ``read_committed`` input, and per ``consume(500)`` one Kafka
transaction holding the changelog writes (one JSON state per changed saga, keyed by saga id,
to a compacted topic, in the input's partition number), the compensations it emits and the
consumed offsets (``send_offsets_to_transaction`` with the group metadata). On assignment it
reads its partitions' changelog to the end before it tracks anything.

Its memory is a dict per partition of saga id -> state (plain dicts), and a state holds the
honest minimum: the start payload, the payload of each step that succeeded (what its
compensation needs: the reservation, the payment), the event ids seen (duplicates), the events
that came before the start (a saga's events are on three topics: nothing orders them), the
steps whose undoing is awaited, and the status. Records are decoded by ``fastavro`` into
straight dicts (no models, so no validation past Avro's), after the single-object header's
fingerprint picks the schema; compensations are encoded the same way, with choreo's headers so
the bench's responder answers them.

What it lacks against choreo's tracker, so read its figure as a floor, not a rival: one saga,
written out by hand (no definitions, versions, parallel steps, sub-sagas or approval steps);
no deadlines or retries (no timer at all); no tracing, history or ``choreo saga`` views; only
the newest schema version of each event (no schema resolution, no registry); records it cannot
read are skipped, not dead-lettered; no retention (finished sagas stay forever); and any
Kafka error ends the process, to be restarted from the changelog, where choreo aborts, rewinds
and goes on (and renews a fenced producer, checks ACLs and partition counts).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from decimal import Decimal
from io import BytesIO
from pathlib import Path
from typing import Any

import fastavro
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from fastavro.schema import fingerprint, to_parsing_canonical_form

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"
MAGIC = b"\xc3\x01"
BATCH = 500
PARTITIONS = 3
TERMINAL = frozenset({"completed", "compensated"})
CORRELATION, EVENT_ID = "choreo_correlation_id", "ce_id"
"""choreo's headers: the saga's id and the event's (the bench's events carry them)."""

ROLES = {
    "shop.orders.OrderPlaced": ("start", "order"),
    "shop.inventory.StockReserved": ("success", "reserve-stock"),
    "shop.inventory.StockReservationFailed": ("failure", "reserve-stock"),
    "shop.payments.PaymentAuthorized": ("success", "charge"),
    "shop.payments.PaymentDeclined": ("failure", "charge"),
    "shop.orders.OrderCompleted": ("completed", None),
    "shop.orders.OrderCancelled": ("compensated", "order"),
    "shop.inventory.StockReleased": ("compensated", "reserve-stock"),
    "shop.payments.PaymentRefunded": ("compensated", "charge"),
}
"""What each event the saga reads means: (role, step)."""
STEPS = ("order", "reserve-stock", "charge")


def cancel_order(saga_id: str, done: Any, reason: str, now: datetime) -> dict[str, Any]:
    return {"order_id": saga_id, "reason": reason, "requested_at": now}


def release_stock(saga_id: str, done: Any, reason: str, now: datetime) -> dict[str, Any]:
    reservation = str(done["reservation_id"])
    return {
        "order_id": saga_id,
        "reservation_id": reservation,
        "reason": reason,
        "requested_at": now,
    }


def refund_payment(saga_id: str, done: Any, reason: str, now: datetime) -> dict[str, Any]:
    return {
        "order_id": saga_id,
        "payment_id": str(done["payment_id"]),
        "amount": Decimal(str(done["amount"])),  # a Decimal, or its text once restored
        "currency": done["currency"],
        "reason": reason,
        "requested_at": now,
    }


COMPENSATIONS: dict[str, tuple[str, Callable[[str, Any, str, datetime], dict[str, Any]]]] = {
    "order": ("shop.orders.CancelOrder", cancel_order),
    "reserve-stock": ("shop.inventory.ReleaseStock", release_stock),
    "charge": ("shop.payments.RefundPayment", refund_payment),
}
"""Each step's undoing: the command's event type, and its payload from the step's result."""


def newest_schema(event_type: str) -> tuple[bytes, Any]:
    """The single-object header (magic + CRC-64-AVRO fingerprint) and parsed newest schema."""
    area, name = event_type.removeprefix("shop.").split(".")
    versions = (SCHEMAS / "shop" / area).glob(f"{name}.v*.avsc")
    path = max(versions, key=lambda p: int(p.stem.rsplit(".v", 1)[1]))
    schema = fastavro.parse_schema(json.loads(path.read_text()))
    crc = fingerprint(to_parsing_canonical_form(schema), "CRC-64-AVRO")
    return MAGIC + bytes.fromhex(crc), schema


def state_bytes(state: dict[str, Any]) -> bytes:
    """A state as the changelog holds it: JSON, payloads' decimals, times and UUIDs as text."""
    return json.dumps(state, default=str, separators=(",", ":")).encode()


class NaiveTracker:
    """``topics`` maps the catalog's topic names (``shop.orders``, ...) to this run's."""

    def __init__(self, bootstrap: str, name: str, topics: dict[str, str], changelog: str) -> None:
        self.bootstrap = bootstrap
        self.name = name
        self.source = name.encode()
        self.topics = topics
        self.changelog = changelog
        self.readers = {}
        for event_type in ROLES:
            header, schema = newest_schema(event_type)
            self.readers[header] = (event_type, schema)
        self.writers = {kind: newest_schema(kind) for kind, _ in COMPENSATIONS.values()}
        self.states: dict[int, dict[str, dict[str, Any]]] = {}
        self.finished: set[str] = set()
        """Sagas whose terminal state is committed (what the bench waits for)."""
        self.consumer: Any = None
        self.producer: Any = None

    def start(self) -> None:
        admin = AdminClient({"bootstrap.servers": self.bootstrap})
        compacted = {"cleanup.policy": "compact"}
        wanted = [NewTopic(t, PARTITIONS, 1) for t in sorted(set(self.topics.values()))]
        wanted.append(NewTopic(self.changelog, PARTITIONS, 1, config=compacted))
        for future in admin.create_topics(wanted).values():
            future.result(30)
        self.producer = Producer(
            {
                "bootstrap.servers": self.bootstrap,
                "transactional.id": f"{self.name}-tx",
                "transaction.timeout.ms": 10_000,
                "enable.idempotence": True,
                "acks": "all",
                "linger.ms": 5,
                "compression.type": "lz4",
            }
        )
        self.producer.init_transactions(30)
        self.consumer = Consumer(
            {
                "bootstrap.servers": self.bootstrap,
                "group.id": self.name,
                "isolation.level": "read_committed",
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
                "partition.assignment.strategy": "range",
            }
        )
        inputs = [self.topics[t] for t in ("shop.orders", "shop.inventory", "shop.payments")]
        self.consumer.subscribe(inputs, on_assign=self._assigned, on_revoke=self._revoked)

    def close(self) -> None:
        self.consumer.close()
        self.producer.flush(10)

    def _assigned(self, consumer: Any, partitions: list[Any]) -> None:
        numbers = {tp.partition for tp in partitions} - self.states.keys()
        self.states.update(self.restore(numbers))

    def _revoked(self, consumer: Any, partitions: list[Any]) -> None:
        for tp in partitions:
            self.states.pop(tp.partition, None)

    def restore(self, numbers: Iterable[int]) -> dict[int, dict[str, dict[str, Any]]]:
        """The committed states of these changelog partitions, read to their end."""
        states: dict[int, dict[str, dict[str, Any]]] = {n: {} for n in numbers}
        if not states:
            return states
        reader = Consumer(
            {
                "bootstrap.servers": self.bootstrap,
                "group.id": f"{self.name}-restore",
                "isolation.level": "read_committed",
                "enable.auto.commit": False,
                "enable.partition.eof": True,
            }
        )
        reader.assign([TopicPartition(self.changelog, n, OFFSET_BEGINNING) for n in states])
        left = set(states)
        while left:
            for message in reader.consume(BATCH, 1.0):
                error = message.error()
                if error is not None and error.code() == KafkaError._PARTITION_EOF:
                    left.discard(message.partition())
                elif error is not None:
                    raise RuntimeError(error.str())
                elif message.value() is None:
                    states[message.partition()].pop(message.key().decode(), None)
                else:
                    states[message.partition()][message.key().decode()] = json.loads(
                        message.value()
                    )
        reader.close()
        return states

    def poll_once(self) -> None:
        messages = self.consumer.consume(BATCH, 0.2)
        if not messages:
            return
        changed: dict[tuple[int, str], dict[str, Any]] = {}
        emits: list[tuple[str, str, str, dict[str, Any]]] = []
        offsets: dict[tuple[str, int], int] = {}
        for message in messages:
            error = message.error()
            if error is not None:
                if error.fatal():
                    raise RuntimeError(error.str())
                continue
            partition = message.partition()
            offsets[message.topic(), partition] = message.offset() + 1
            value = message.value()
            known = None if value is None else self.readers.get(value[:10])
            if known is None:
                continue  # not the saga's: its own compensations, other events on the topics
            headers = dict(message.headers())
            saga_id = headers[CORRELATION].decode()
            event_id = headers[EVENT_ID].decode()
            event_type, schema = known
            payload = fastavro.schemaless_reader(BytesIO(value[10:]), schema, None)
            out = self.track(partition, saga_id, event_type, event_id, payload)
            if out is not None:
                emits += [(saga_id, event_id, kind, body) for kind, body in out]
                changed[partition, saga_id] = self.states[partition][saga_id]
        self.commit(changed, emits, offsets)

    def track(
        self, partition: int, saga_id: str, event_type: str, event_id: str, payload: Any
    ) -> list[tuple[str, dict[str, Any]]] | None:
        """One event of one saga: the compensations to emit, or None for a duplicate."""
        sagas = self.states[partition]
        state = sagas.get(saga_id)
        if state is None:
            state = sagas[saga_id] = {
                "status": "waiting",
                "start": None,
                "done": {},
                "undoing": [],
                "seen": [],
                "early": [],
            }
        elif event_id in state["seen"]:
            return None
        state["seen"].append(event_id)
        return self.handle(state, saga_id, event_type, event_id, payload)

    def handle(
        self, state: dict[str, Any], saga_id: str, event_type: str, event_id: str, payload: Any
    ) -> list[tuple[str, dict[str, Any]]]:
        """Move the saga on by one event; the compensations to emit."""
        role, step = ROLES[event_type]
        if role == "start":
            if state["start"] is not None:
                return []
            state["start"], state["status"], state["done"]["order"] = payload, "running", None
            early, state["early"] = state["early"], []
            return [
                e for kind, eid, body in early for e in self.handle(state, saga_id, kind, eid, body)
            ]
        if state["start"] is None:
            state["early"].append([event_type, event_id, payload])
            return []
        if role == "success" and state["status"] == "running":
            state["done"][step] = payload
        elif role == "failure" and state["status"] == "running":
            reason = f"step '{step}' failed ({event_type})"
            return self.compensate(state, saga_id, reason)
        elif role == "completed" and state["status"] == "running":
            state["status"] = "completed"
        elif role == "compensated" and step in state["undoing"]:
            state["undoing"].remove(step)
            if not state["undoing"]:
                state["status"] = "compensated"
        return []

    def compensate(
        self, state: dict[str, Any], saga_id: str, reason: str
    ) -> list[tuple[str, dict[str, Any]]]:
        now = datetime.now(UTC)
        state["status"] = "compensating"
        out = []
        for step in reversed(STEPS):
            if step in state["done"]:
                kind, build = COMPENSATIONS[step]
                result = state["start"] if step == "order" else state["done"][step]
                out.append((kind, build(saga_id, result, reason, now)))
                state["undoing"].append(step)
        if not out:
            state["status"] = "compensated"
        return out

    def commit(
        self,
        changed: dict[tuple[int, str], dict[str, Any]],
        emits: list[tuple[str, str, str, dict[str, Any]]],
        offsets: dict[tuple[str, int], int],
    ) -> None:
        """One transaction: the changed states, the compensations, the offsets."""
        producer = self.producer
        producer.begin_transaction()
        for (partition, saga_id), state in changed.items():
            producer.produce(self.changelog, state_bytes(state), saga_id, partition=partition)
        for saga_id, cause, kind, body in emits:
            header, schema = self.writers[kind]
            out = BytesIO()
            out.write(header)
            fastavro.schemaless_writer(out, schema, body)
            headers = [
                (EVENT_ID, str(uuid.uuid4())),
                ("ce_type", kind),
                ("ce_source", self.source),
                ("ce_time", datetime.now(UTC).isoformat(timespec="milliseconds")),
                ("ce_specversion", "1.0"),
                (CORRELATION, saga_id),
                ("choreo_causation_id", cause),
            ]
            topic = self.topics[kind.rsplit(".", 1)[0]]
            producer.produce(topic, out.getvalue(), saga_id, headers=headers)
        positions = [TopicPartition(t, p, o) for (t, p), o in offsets.items()]
        producer.send_offsets_to_transaction(positions, self.consumer.consumer_group_metadata(), 30)
        producer.commit_transaction(30)
        self.finished.update(s for (_, s), state in changed.items() if state["status"] in TERMINAL)
