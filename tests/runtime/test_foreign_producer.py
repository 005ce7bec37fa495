"""A client that is not choreo writes every kind of bad record among good ones into a
running ``choreo run`` service on the real broker.

Accounting: every record read is handled, skipped by design or dead-lettered with its own
reason (the ``/metrics`` counters and the DLQ agree on each), every good event is handled
once, the process never exits, and lag reaches 0 although the topic ends with transaction
markers (the last good events are written in a transaction, as replay and exactly-once
outputs are).
"""

from __future__ import annotations

import json
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from collections import Counter
from pathlib import Path
from typing import NamedTuple

import pytest
from builders import placed, received, reserved
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from conftest import ServiceProcess
from prometheus_client.parser import text_string_to_metric_families

from choreo import _headers
from choreo._dev.ports import free_ports
from choreo._runtime import dead_letters as dlq
from choreo._schemas import Catalog, Codec
from choreo._schemas.codec import MAGIC
from services.events import OrderPlaced, PaymentAuthorized

pytestmark = pytest.mark.stack
GOOD = 60
TRANSACTED = 12
OVERSIZE = 1_200_000
BINARY = b"\xff\xfe\x00\x80"
"""A header value that is not text; dead letters must keep it byte for byte."""

Headers = list[tuple[str, bytes | None]]


def _ce(event_type: str, **changed: bytes | None) -> Headers:
    """Headers as a choreo producer writes them, with some values replaced."""
    event_id = str(uuid.uuid4())
    base = _headers.event_headers(event_type.encode(), b"java-app", event_id, event_id, None)
    headers: Headers = [(name, changed.get(name, value)) for name, value in base]
    return [*headers, ("x-binary", BINARY)]


def _bad_records(codec: Codec) -> list[tuple[str, bytes | None, Headers]]:
    """(expected reason, value, headers): at least one of each kind of bad record."""
    good = codec.encode(placed("bad"))
    placed_type = OrderPlaced.event_type
    return [
        ("too-large", good + bytes(OVERSIZE), _ce(placed_type)),
        ("unknown-type", good, _ce(placed_type, ce_type=b"shop.orders.NoSuchThing")),
        ("wrong-topic", good, _ce(placed_type, ce_type=PaymentAuthorized.event_type.encode())),
        ("bad-header", good, _ce(placed_type, ce_type=b"shop.orders.\xffPlaced")),
        ("bad-header", good, _ce(placed_type, ce_id=b"\xc3\x28-not-utf8")),
        ("bad-header", good, _ce(placed_type, ce_time=b"2026-12-03T\xff")),
        ("bad-header", good, _ce(placed_type, choreo_correlation_id=BINARY)),
        ("bad-header", good, [*_ce(placed_type), (_headers.DELIVER_AT_MS, b"soon")]),
        ("registry-framed", b"\x00\x00\x00\x00\x2a" + good[10:], _ce(placed_type)),
        ("registry-framed", b"\x00\x00\x00\x00\x07" + good[10:], []),
        ("not-avro", b"", _ce(placed_type)),
        ("tombstone", None, _ce(placed_type)),
        ("truncated", good[:-20], _ce(placed_type)),
        ("not-avro", good + b"\x00trailing", _ce(placed_type)),
        ("unknown-fingerprint", MAGIC + bytes(8) + good[10:], _ce(placed_type)),
        ("not-avro", json.dumps({"order_id": "json"}).encode(), _ce(placed_type)),
        ("not-avro", json.dumps({"order_id": "json"}).encode(), []),
        ("wrong-type", codec.encode(reserved("bad")), _ce(placed_type)),
    ]


def _scrape(port: int) -> dict[str, list[tuple[dict[str, str], float]]]:
    """Samples by name; empty while the service is not serving yet."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as reply:
            text = reply.read().decode()
    except OSError:
        return {}
    samples: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append((sample.labels, sample.value))
    return samples


def _total(samples: dict[str, list[tuple[dict[str, str], float]]], name: str, topic: str) -> int:
    return int(sum(value for labels, value in samples.get(name, []) if labels["topic"] == topic))


def _wait_ready(port: int, log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as reply:
                if reply.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.3)
    raise AssertionError(f"the service never got ready:\n{log.read_text()[-3000:]}")


class Ledger(NamedTuple):
    process: subprocess.Popen[str]
    file: Path
    """Where the service appends each event it handled."""
    metrics_port: int
    log: Path


def _start_ledger(run_service: ServiceProcess, schemas: Path, tmp_path: Path, group: str) -> Ledger:
    """``ledger_service`` under its own consumer group, once its /readyz says it is ready."""
    ledger = tmp_path / "ledger.txt"
    [port] = free_ports(1)
    process = run_service(
        "ledger_service",
        schemas,
        LEDGER_FILE=str(ledger),
        CHOREO_GROUP_ID=group,
        CHOREO_METRICS_PORT=str(port),
    )
    log = tmp_path / "ledger_service-0.log"
    _wait_ready(port, log)
    return Ledger(process, ledger, port, log)


def _read_dlq(kafka: str, topic: str, expected: int) -> list[tuple[bytes | None, Headers]]:
    consumer = Consumer(
        {
            "bootstrap.servers": kafka,
            "group.id": f"reader-{uuid.uuid4()}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([topic])
    found: list[tuple[bytes | None, Headers]] = []
    deadline = time.monotonic() + 60
    while len(found) < expected and time.monotonic() < deadline:
        for message in consumer.consume(100, 0.5):
            if message.error() is None:
                found.append((message.value(), message.headers() or []))
    consumer.close()
    return found


def test_every_record_from_a_foreign_producer_is_accounted_for(
    kafka: str, isolated_schemas: Path, tmp_path: Path, run_service: ServiceProcess
) -> None:
    catalog = Catalog.load(isolated_schemas)
    codec = Codec(catalog)
    topic = catalog.topic_of(OrderPlaced.event_type).name
    group = f"foreign-{uuid.uuid4().hex[:8]}"
    service, ledger, port, log = _start_ledger(run_service, isolated_schemas, tmp_path, group)

    producer = Producer(
        {
            "bootstrap.servers": kafka,
            "compression.type": "gzip",  # how a 1.2 MB record gets past the broker's 1 MB limit
            "message.max.bytes": 3_000_000,
            "linger.ms": 5,
        }
    )
    bad = _bad_records(codec)
    skipped = 3
    sent: list[tuple[str, bytes | None, Headers]] = []
    good_ids: list[str] = []
    for i in range(GOOD):
        order_id = f"good-{i}"
        good_ids.append(order_id)
        headers = _ce(OrderPlaced.event_type) if i % 5 else []  # no headers: typed by fingerprint
        if i == 1:  # a null header value (Debezium's outbox writes NULL columns so) is absent
            headers = _ce(OrderPlaced.event_type, ce_source=None)
        producer.produce(topic, codec.encode(placed(order_id)), order_id.encode(), headers=headers)
        if i < len(bad):
            reason, value, bad_headers = bad[i]
            producer.produce(topic, value, f"bad-{i}".encode(), headers=bad_headers)
            sent.append((reason, value, bad_headers))
        if i < skipped:  # a type the topic carries that this service does not handle
            event = received(f"skip-{i}")
            producer.produce(topic, codec.encode(event), b"skip", headers=_ce(event.event_type))
    assert producer.flush(60) == 0

    transactional = Producer(
        {"bootstrap.servers": kafka, "transactional.id": f"foreign-{uuid.uuid4()}"}
    )
    transactional.init_transactions(30)
    transactional.begin_transaction()
    for i in range(TRANSACTED):
        order_id = f"txn-{i}"
        good_ids.append(order_id)
        transactional.produce(
            topic,
            codec.encode(placed(order_id)),
            order_id.encode(),
            headers=_ce(OrderPlaced.event_type),
        )
    transactional.commit_transaction(30)

    total = len(good_ids) + len(sent) + skipped
    deadline = time.monotonic() + 120
    samples: dict[str, list[tuple[dict[str, str], float]]] = {}
    lags: list[float] = []
    while time.monotonic() < deadline:
        assert service.poll() is None, f"the service exited:\n{log.read_text()[-3000:]}"
        samples = _scrape(port)
        lags = [
            value
            for labels, value in samples.get("choreo_consumer_lag", [])
            if labels["topic"] == topic
        ]
        if (
            _total(samples, "choreo_messages_consumed_total", topic) >= total
            and len(lags) == 3
            and not any(lags)
        ):
            break
        time.sleep(0.5)

    consumed = _total(samples, "choreo_messages_consumed_total", topic)
    handled = _total(samples, "choreo_messages_handled_total", topic)
    skips = _total(samples, "choreo_messages_skipped_total", topic)
    parked = Counter(
        labels["reason"]
        for labels, value in samples.get("choreo_messages_dead_lettered_total", [])
        if labels["topic"] == topic
        for _ in range(int(value))
    )
    print(
        f"\naccounting on {topic}: consumed {consumed}, handled {handled}, skipped {skips},"
        f" dead-lettered {sum(parked.values())} {dict(sorted(parked.items()))}, lag {lags}"
    )
    assert consumed == total == handled + skips + sum(parked.values())
    assert handled == len(good_ids) and skips == skipped
    assert parked == Counter(reason for reason, _, _ in sent)
    assert lags == [0, 0, 0], f"lag per partition: {lags}"
    assert service.poll() is None

    handled_ids = [line.split()[0] for line in ledger.read_text().splitlines()]
    assert Counter(handled_ids) == dict.fromkeys(good_ids, 1)

    letters = _read_dlq(kafka, dlq.dlq_topic("ledger", topic), len(sent))
    assert len(letters) == len(sent)
    unmatched = list(sent)
    for value, headers in letters:
        reason = dict(headers)[dlq.REASON].decode()
        match = next(
            item for item in unmatched if item[0] == reason and _kept(item, value, headers)
        )
        unmatched.remove(match)
    assert unmatched == []


def _kept(sent: tuple[str, bytes | None, Headers], value: bytes | None, headers: Headers) -> bool:
    """The dead letter holds the record's headers byte for byte, and its value (or, cut to
    fit, the value's first bytes and its size)."""
    _, original, original_headers = sent
    if headers[: len(original_headers)] != original_headers:
        return False
    size = dict(headers).get(dlq.VALUE_BYTES)
    if size is None:
        return value == original
    return (
        original is not None
        and size == str(len(original)).encode()
        and original.startswith(value or b"x")
    )


def test_a_dead_letter_the_broker_refuses_stops_its_partition_only(
    kafka: str, isolated_schemas: Path, tmp_path: Path, run_service: ServiceProcess
) -> None:
    """The DLQ topic takes records of at most 1,000 bytes (a limit nobody can fix from the
    service): the poison's partition stops uncommitted and says why; the others go on."""
    catalog = Catalog.load(isolated_schemas)
    codec = Codec(catalog)
    topic = catalog.topic_of(OrderPlaced.event_type).name
    admin = AdminClient({"bootstrap.servers": kafka})
    small = NewTopic(dlq.dlq_topic("ledger", topic), 1, 1, config={"max.message.bytes": "1000"})
    for future in admin.create_topics([small, NewTopic(topic, 3, 1)]).values():
        future.result(30)
    group = f"refused-{uuid.uuid4().hex[:8]}"
    service, ledger, port, log = _start_ledger(run_service, isolated_schemas, tmp_path, group)

    producer = Producer({"bootstrap.servers": kafka})
    producer.produce(topic, b"not avro", b"poison", partition=0, headers=_ce("x"))
    for i in range(30):
        order_id = f"after-{i}"
        value = codec.encode(placed(order_id))
        headers = _ce(OrderPlaced.event_type)
        producer.produce(topic, value, order_id.encode(), partition=i % 3, headers=headers)
    assert producer.flush(30) == 0

    deadline = time.monotonic() + 90
    stopped: list[dict[str, str]] = []
    lags: dict[str, float] = {}
    while time.monotonic() < deadline:
        assert service.poll() is None, f"the service exited:\n{log.read_text()[-3000:]}"
        samples = _scrape(port)
        stopped = [labels for labels, value in samples.get("choreo_partition_stopped", []) if value]
        lags = {
            labels["partition"]: value
            for labels, value in samples.get("choreo_consumer_lag", [])
            if labels["topic"] == topic
        }
        if stopped and lags.get("1") == 0 and lags.get("2") == 0:
            break
        time.sleep(0.5)
    assert [(s["topic"], s["partition"], s["reason"]) for s in stopped] == [
        (topic, "0", "dead-letter-refused")
    ]
    assert lags.get("1") == 0 and lags.get("2") == 0, lags
    handled = {line.split()[0]: line.split()[1] for line in ledger.read_text().splitlines()}
    assert {f"after-{i}" for i in range(30) if i % 3} <= set(handled)
    try:
        urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5)
        raise AssertionError("/readyz said ready with a stopped partition")
    except urllib.error.HTTPError as refused:
        why = refused.read().decode()
    assert f"{topic}[0] stopped" in why and "refused" in why, why
    assert "dead letter NOT written" in log.read_text()
    assert service.poll() is None

    reader = Consumer({"bootstrap.servers": kafka, "group.id": group})
    [committed] = reader.committed([TopicPartition(topic, 0)], timeout=10)
    reader.close()
    assert committed.offset < 1, "the poison (offset 0) must stay uncommitted"
