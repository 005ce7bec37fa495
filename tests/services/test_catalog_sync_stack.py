"""The catalog sync end to end: PostgreSQL → Debezium → Kafka → ``choreo run`` → reporting table.

Thousands of inserts, updates and deletes, some invalid, with the service
killed (SIGKILL) after its first loads and before it ever committed an
offset, so the restarted service is handed everything again.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import cast

import psycopg
import pytest
from catalog_kit import own_pipeline, snapshot
from confluent_kafka import Consumer
from psycopg import sql

from choreo._runtime import dead_letters as dlq
from choreo.cdc import ConnectClient, drop_slot
from services.catalog_sync import report
from services.catalog_sync.demo import prepare, run_demo, seed, wait_caught_up
from services.catalog_sync.service import build
from services.catalog_sync.settings import Settings

pytestmark = pytest.mark.stack

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def settings(postgres: str, connect: str) -> Iterator[Settings]:
    with own_pipeline(postgres) as own:
        source = build(own).source
        try:
            yield own
        finally:
            ConnectClient(connect).delete(source.name, missing_ok=True)
            drop_slot(source)


class Service:
    """``choreo run services.catalog_sync`` as its own process, pointed at the test's pipeline."""

    def __init__(self, settings: Settings, kafka: str, log: Path, commit_interval_s: float) -> None:
        env = {
            **os.environ,
            "CHOREO_BOOTSTRAP_SERVERS": kafka,
            "CHOREO_COMMIT_INTERVAL_S": str(commit_interval_s),
            "CATALOG_SYNC_DSN": settings.dsn,
            "CATALOG_SYNC_SOURCE_TABLE": settings.source_table,
            "CATALOG_SYNC_REPORTING_SCHEMA": settings.reporting_schema,
            "CATALOG_SYNC_SERVICE": settings.service,
            "CATALOG_SYNC_CONNECTOR": settings.connector,
            "CATALOG_SYNC_TOPIC_PREFIX": settings.topic_prefix,
        }
        self.log = log
        choreo = Path(sys.executable).with_name("choreo")
        with log.open("ab") as out:
            self.process = subprocess.Popen(
                [str(choreo), "run", "services.catalog_sync"],
                cwd=ROOT,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(30)


def loads(settings: Settings) -> list[report.Batch]:
    with psycopg.connect(settings.dsn) as conn:
        return report.batches(conn, settings.reporting_schema, settings.service)


def source_rows(settings: Settings) -> dict[int, tuple[object, ...]]:
    schema, table = settings.source_table.split(".")
    columns = ("sku", "name", "category", "price", "currency")
    query = sql.SQL("SELECT id, {} FROM {}.{}").format(
        sql.SQL(", ").join(map(sql.Identifier, columns)),
        sql.Identifier(schema),
        sql.Identifier(table),
    )
    with psycopg.connect(settings.dsn) as conn:
        return {row[0]: tuple(row[1:]) for row in conn.execute(query)}


def dead_letters(
    kafka: str, topic: str, wanted: set[bytes], timeout_s: float = 30
) -> list[tuple[bytes, bytes, bytes]]:
    """(key, reason, message) of the dead letters, read until every wanted key was seen."""
    consumer = Consumer(
        {
            "bootstrap.servers": kafka,
            "group.id": f"catalog-dlq-reader-{uuid.uuid4().hex[:8]}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([topic])
    found: list[tuple[bytes, bytes, bytes]] = []
    deadline = time.monotonic() + timeout_s
    try:
        while not wanted <= {key for key, _, _ in found} and time.monotonic() < deadline:
            for message in consumer.consume(500, 0.5):
                if message.error() is None:
                    headers = dict(cast(list[tuple[str, bytes]], message.headers() or []))
                    key = cast(bytes, message.key())
                    found.append((key, headers[dlq.REASON], headers[dlq.ERROR_MESSAGE]))
    finally:
        consumer.close()
    return found


def test_thousands_of_changes_load_exactly_once_across_a_crash(
    settings: Settings, kafka: str, connect: str, tmp_path: Path
) -> None:
    prepare(settings, connect)  # an empty table: the change topic does not exist yet
    log = tmp_path / "catalog-sync.log"
    service = Service(
        settings, kafka, log, commit_interval_s=60
    )  # no offset commit before the kill
    try:
        first = seed(settings, 3000)
        deadline = time.monotonic() + 60
        while not loads(settings):
            assert time.monotonic() < deadline, (
                f"nothing loaded in 60s; see {log.read_text()[-3000:]}"
            )
            time.sleep(0.05)
        service.kill()
        loaded_before_kill = sum(b.loaded for b in loads(settings))
        second = seed(settings, 3000)  # written while the service is down
        service = Service(settings, kafka, log, commit_interval_s=1)
        mark = wait_caught_up(settings, second.floor_lsn, timeout_s=120)
    finally:
        service.stop()

    invalid = first.invalid | second.invalid
    changes = sum(first.ops.values()) + sum(second.ops.values())
    source = source_rows(settings)
    expected = {pid: row for pid, row in source.items() if pid not in invalid}
    assert len(expected) == len(first.valid | second.valid) > 2000
    assert snapshot(settings) == expected
    assert mark.changes_loaded == changes - len(invalid)  # each valid change counted once
    assert mark.last_lsn >= second.floor_lsn

    batches = loads(settings)
    assert max(b.changes for b in batches) <= 1000
    redelivered = sum(b.changes for b in batches) - changes
    assert redelivered >= loaded_before_kill > 0  # the restart was handed the loaded ones again
    assert sum(b.loaded for b in batches) == mark.changes_loaded

    topic = build(settings).source.topic_of(settings.source_table)
    wanted = {f'{{"id":{pid}}}'.encode() for pid in invalid}
    parked = dead_letters(kafka, dlq.dlq_topic(settings.service, topic), wanted)
    assert {key for key, _, _ in parked} == wanted
    for key, reason, message in parked:
        pid = int(key.decode().split(":")[1].rstrip("}"))
        assert reason == b"rejected"
        assert message.decode().startswith(f"product {pid}: {invalid[pid]}: ")

    figures = report.Figures.of(batches, first.began)  # type: ignore[arg-type]
    print(f"\nacross a kill: {figures}; {redelivered} redelivered, {len(invalid)} invalid")


def test_the_demo_seeds_waits_and_reports_what_the_loads_did(
    settings: Settings, kafka: str, connect: str, tmp_path: Path
) -> None:
    prepare(settings, connect)
    service = Service(settings, kafka, tmp_path / "catalog-sync.log", commit_interval_s=1)
    try:
        figures = run_demo(4000, settings)
    finally:
        service.stop()
    print(f"\ndemo: {figures}")
    assert figures.changes == 4000  # nothing redelivered without a crash
    assert figures.rejected == 4000 // 40
    assert figures.loaded == 4000 - figures.rejected
    assert figures.batches >= 4 and figures.batch_sizes[2] <= 1000
