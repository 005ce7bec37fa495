"""Send parked records back to where they came from, never the same record twice.

Each replayed record and a marker in the compacted ``choreo.dlq-replays``
topic (key ``<dlq topic>/<partition>/<offset>``) are written in one Kafka
transaction: an interrupted replay leaves either both or neither, so running
it again picks up exactly what is missing. The transactional id is per DLQ
topic, so two replays of one DLQ at once fence each other instead of doubling.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from choreo._dlq.reader import READ_TIMEOUT_S, DeadLetter, read, read_partitions
from choreo._errors import TransportError

LEDGER_TOPIC = "choreo.dlq-replays"
REPLAYED_FROM = "choreo_replayed_from"
"""Header on a replayed record: the DLQ coordinates it came from."""
TRANSACTION_SIZE = 200


@dataclass(frozen=True)
class Selection:
    """Which parked records to replay; every given criterion must hold."""

    partition: int | None = None
    from_offset: int | None = None
    to_offset: int | None = None
    """Inclusive."""
    error_type: str | None = None
    """Matches the full type name or its last part (``ValueError``)."""
    reason: str | None = None
    since: datetime | None = None
    until: datetime | None = None

    def matches(self, record: DeadLetter) -> bool:
        checks = (
            self.partition is None or record.partition == self.partition,
            self.from_offset is None or record.offset >= self.from_offset,
            self.to_offset is None or record.offset <= self.to_offset,
            self.error_type is None
            or self.error_type in (record.error_type, record.error_type.rsplit(".", 1)[-1]),
            self.reason is None or record.reason == self.reason,
            self.since is None or record.failed_at >= self.since,
            self.until is None or record.failed_at <= self.until,
        )
        return all(checks)


@dataclass
class ReplayReport:
    selected: int = 0
    replayed: int = 0
    already_replayed: int = 0
    destinations: dict[str, int] = field(default_factory=dict)


def _ledger_key(record: DeadLetter) -> str:
    return f"{record.topic}/{record.partition}/{record.offset}"


def _ensure_ledger(settings: dict[str, Any]) -> None:
    admin = AdminClient(settings)
    if LEDGER_TOPIC in admin.list_topics(timeout=READ_TIMEOUT_S).topics:
        return
    topic = NewTopic(LEDGER_TOPIC, 1, config={"cleanup.policy": "compact"})
    for future in admin.create_topics([topic]).values():
        try:
            future.result(READ_TIMEOUT_S)
        except KafkaException as error:
            if "TOPIC_ALREADY_EXISTS" not in str(error):
                raise TransportError(f"cannot create {LEDGER_TOPIC}: {error}") from None


def replayed_keys(settings: dict[str, Any], dlq_topic: str) -> set[str]:
    """Keys of the records of ``dlq_topic`` already replayed (committed transactions only)."""
    consumer = Consumer(
        {
            **settings,
            "group.id": "choreo-dlq-ledger",
            "isolation.level": "read_committed",
            "enable.auto.commit": False,
        }
    )
    prefix = f"{dlq_topic}/".encode()
    keys: set[str] = set()
    try:
        for message in read_partitions(consumer, [TopicPartition(LEDGER_TOPIC, 0)]):
            key = message.key() or b""
            if key.startswith(prefix):
                keys.add(key.decode())
    finally:
        consumer.close()
    return keys


def replay(
    settings: dict[str, Any],
    dlq_topic: str,
    selection: Selection,
    *,
    dry_run: bool = False,
    limit: int | None = None,
) -> ReplayReport:
    """Replay the selected records of ``dlq_topic`` to their original topics."""
    _ensure_ledger(settings)
    done = replayed_keys(settings, dlq_topic)
    report = ReplayReport()
    pending: list[DeadLetter] = []
    for record in read(settings, dlq_topic):
        if not selection.matches(record):
            continue
        report.selected += 1
        if _ledger_key(record) in done:
            report.already_replayed += 1
            continue
        if record.source_topic is None:
            raise TransportError(
                f"{dlq_topic}[{record.partition}]@{record.offset} has no source topic header"
            )
        if limit is not None and len(pending) >= limit:
            continue
        pending.append(record)
    for record in pending:
        assert record.source_topic is not None
        report.destinations[record.source_topic] = (
            report.destinations.get(record.source_topic, 0) + 1
        )
    report.replayed = len(pending)
    if not dry_run and pending:
        _send(settings, dlq_topic, pending)
    return report


def _send(settings: dict[str, Any], dlq_topic: str, records: Iterable[DeadLetter]) -> None:
    producer = Producer(
        {
            **settings,
            "transactional.id": f"choreo-dlq-replay-{dlq_topic}",
            "enable.idempotence": True,
        }
    )
    producer.init_transactions(READ_TIMEOUT_S * 3)
    batch: list[DeadLetter] = []
    for record in records:
        batch.append(record)
        if len(batch) >= TRANSACTION_SIZE:
            _commit_batch(producer, batch)
            batch = []
    if batch:
        _commit_batch(producer, batch)


def _commit_batch(producer: Producer, batch: list[DeadLetter]) -> None:
    producer.begin_transaction()
    now = datetime.now(UTC).isoformat(timespec="milliseconds")
    for record in batch:
        key = _ledger_key(record)
        assert record.source_topic is not None
        producer.produce(
            record.source_topic,
            key=record.key,
            value=record.value,
            headers=[*record.original_headers, (REPLAYED_FROM, key.encode())],
        )
        marker = json.dumps({"replayed_at": now, "to": record.source_topic})
        producer.produce(LEDGER_TOPIC, key=key.encode(), value=marker.encode())
    producer.commit_transaction(READ_TIMEOUT_S * 3)
