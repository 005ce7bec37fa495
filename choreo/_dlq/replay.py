"""Send parked records back to where they came from, never the same record twice.

Where they came from is read from the DLQ topic's name, never from a record's
``choreo_dlq_topic`` header: any principal that may write its own DLQ can write
any header, and a replay usually runs with more rights than that principal. A
record whose header names another topic is refused (``--to-topic`` redirects on
purpose). Replayed records are placed by murmur2 of their key, as every other
choreo producer places them, so a replayed event lands on the partition of its
key's other events.

Each replayed record and a marker in the owner's compacted ledger,
``choreo.dlq-replays.<owner>`` (key ``<dlq topic>/<partition>/<offset>``), are
written in one Kafka transaction: an interrupted replay leaves either both or
neither, so running it again picks up exactly what is missing. One ledger per
owner, so a service allowed to replay its own DLQs cannot mark another's
records as replayed (or read which were). The transactional id is per DLQ
topic, so two replays of one DLQ at once fence each other instead of doubling.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from choreo._dlq.naming import parse
from choreo._dlq.reader import GRANT_HINT, READ_TIMEOUT_S, DeadLetter, read, read_partitions
from choreo._dlq.reasons import check_reason
from choreo._errors import TransportError
from choreo._runtime import dead_letters as dlq
from choreo._transport.base import TopicConfig

SHARED_LEDGER = "choreo.dlq-replays"
"""The ledger of every owner before there was one per owner: still read where it exists and
this principal can see it, so records replayed before are not replayed again."""
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
    destination: str
    selected: int = 0
    already_replayed: int = 0
    sent: list[DeadLetter] = field(default_factory=list)
    """Replayed (or, in a dry run, to be replayed), in offset order per partition."""
    refused: list[str] = field(default_factory=list)
    """One line per selected record not replayed because its header disagrees with the name."""

    @property
    def replayed(self) -> int:
        return len(self.sent)


def _ledger_key(record: DeadLetter) -> str:
    return f"{record.topic}/{record.partition}/{record.offset}"


def ledger(owner: str) -> TopicConfig:
    """Where the replays of ``owner``'s DLQ topics are marked (``choreo acl apply`` makes it)."""
    return TopicConfig(f"{SHARED_LEDGER}.{owner}", partitions=1, compacted=True)


def _ledgers(settings: dict[str, Any], own: TopicConfig) -> list[str]:
    """The owner's ledger, created if missing (a service principal cannot: ``choreo acl apply
    --replay`` does), and the shared one of earlier versions if this principal can see it."""
    admin = AdminClient(settings)
    existing = admin.list_topics(timeout=READ_TIMEOUT_S).topics
    legacy = [SHARED_LEDGER] if SHARED_LEDGER in existing else []
    if own.name in existing:
        return [own.name, *legacy]
    topic = NewTopic(own.name, own.partitions, config={"cleanup.policy": "compact"})
    for future in admin.create_topics([topic]).values():
        try:
            future.result(READ_TIMEOUT_S)
        except KafkaException as error:
            if "TOPIC_ALREADY_EXISTS" not in str(error):
                raise TransportError(f"cannot create {own.name}: {error} {GRANT_HINT}") from None
    return [own.name, *legacy]


def replayed_keys(settings: dict[str, Any], dlq_topic: str, ledgers: Iterable[str]) -> set[str]:
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
        for message in read_partitions(consumer, [TopicPartition(t, 0) for t in ledgers]):
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
    to_topic: str | None = None,
    dry_run: bool = False,
    limit: int | None = None,
) -> ReplayReport:
    """Replay the selected records of ``dlq_topic`` to the topic its name says they came from
    (or to ``to_topic``, where every selected record goes, whatever its headers say)."""
    owner, source = parse(dlq_topic)
    ledgers = _ledgers(settings, ledger(owner))
    done = replayed_keys(settings, dlq_topic, ledgers)
    report = ReplayReport(to_topic or source)
    reasons: set[str] = set()
    for record in read(settings, dlq_topic):
        reasons.add(record.reason)
        if not selection.matches(record):
            continue
        report.selected += 1
        if _ledger_key(record) in done:
            report.already_replayed += 1
        elif to_topic is None and record.source_topic != source:
            report.refused.append(
                f"{dlq_topic}[{record.partition}]@{record.offset}: refused, its "
                f"{dlq.TOPIC} header names {record.source_topic!r} but the records of "
                f"{dlq_topic} come from {source!r} (--to-topic replays elsewhere on purpose)"
            )
        elif (cut := record.header(dlq.VALUE_BYTES)) is not None:
            report.refused.append(
                f"{dlq_topic}[{record.partition}]@{record.offset}: refused, only the first "
                f"{len(record.value or b'')} of its {cut} value bytes were kept "
                f"({dlq.VALUE_BYTES}); the whole record is at {record.source_topic}"
                f"[{record.header(dlq.PARTITION)}]@{record.header(dlq.OFFSET)} while retained"
            )
        elif limit is None or len(report.sent) < limit:
            report.sent.append(record)
    check_reason(selection.reason, reasons)
    if not dry_run and report.sent:
        _send(settings, dlq_topic, report.destination, ledgers[0], report.sent)
    return report


def _send(
    settings: dict[str, Any],
    dlq_topic: str,
    destination: str,
    marks: str,
    records: Iterable[DeadLetter],
) -> None:
    """Replay ``records`` to ``destination``, marking each in the ledger ``marks``."""
    producer = Producer(
        {
            **settings,
            "transactional.id": replay_transactional_id(dlq_topic),
            "enable.idempotence": True,
            # As the transports and the saga tracker do (and Java's and aiokafka's default):
            # librdkafka's own default would put a replayed key on another partition.
            "partitioner": "murmur2_random",
        }
    )
    refused: list[str] = []
    """The broker's delivery errors: why a commit failed (e.g. no WRITE on ``destination``)."""

    def delivered(error: KafkaError | None, message: Message) -> None:
        if error is not None:
            refused.append(f"{message.topic()}: {error.str()}")

    try:
        producer.init_transactions(READ_TIMEOUT_S * 3)
        batch: list[DeadLetter] = []
        for record in records:
            batch.append(record)
            if len(batch) >= TRANSACTION_SIZE:
                _commit_batch(producer, destination, marks, batch, delivered)
                batch = []
        if batch:
            _commit_batch(producer, destination, marks, batch, delivered)
    except KafkaException as error:
        raise TransportError(
            f"replaying {dlq_topic} to {destination} (and marking it in {marks}) "
            f"as transactional id {replay_transactional_id(dlq_topic)}: "
            f"{refused[0] if refused else error.args[0]}; "
            "batches committed before stay replayed; run it again for the rest"
        ) from None


def replay_transactional_id(dlq_topic: str) -> str:
    """One per DLQ topic (``choreo acl`` grants it literally to the topic's owner)."""
    return f"choreo-dlq-replay-{dlq_topic}"


def _commit_batch(
    producer: Producer,
    destination: str,
    marks: str,
    batch: list[DeadLetter],
    delivered: Callable[[KafkaError | None, Message], None],
) -> None:
    producer.begin_transaction()
    now = datetime.now(UTC).isoformat(timespec="milliseconds")
    for record in batch:
        key = _ledger_key(record)
        producer.produce(
            destination,
            key=record.key,
            value=record.value,
            headers=[*record.original_headers, (REPLAYED_FROM, key.encode())],
            on_delivery=delivered,
        )
        marker = json.dumps({"replayed_at": now, "to": destination})
        producer.produce(marks, key=key.encode(), value=marker.encode(), on_delivery=delivered)
    producer.commit_transaction(READ_TIMEOUT_S * 3)
