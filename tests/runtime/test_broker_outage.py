"""The broker goes away mid-run and comes back: the service waits it out and loses nothing."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
from builders import placed
from confluent_kafka import Consumer, TopicPartition

import choreo
from choreo._dev import local_stack
from choreo._schemas import Catalog
from services.events import OrderPlaced

pytestmark = pytest.mark.stack
OUTAGE_S = 8


async def _publish(kafka: str, schemas: Path, ids: range) -> None:
    config = choreo.ServiceConfig(
        kafka=choreo.KafkaConfig(bootstrap_servers=kafka), schemas_dir=schemas
    )
    async with choreo.Publisher("test", config) as publisher:
        for i in ids:
            await publisher.publish(placed(f"o-{i}"))


def _handled(ledger: Path) -> list[str]:
    return [line.split()[0] for line in ledger.read_text().splitlines()] if ledger.exists() else []


def _wait(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def test_a_broker_outage_mid_run_is_waited_out_and_nothing_is_lost(
    kafka: str,
    isolated_schemas: Path,
    tmp_path: Path,
    run_service: Callable[..., subprocess.Popen[str]],
) -> None:
    ledger = tmp_path / "ledger.txt"
    group = f"outage-{time.time_ns()}"
    service = run_service(
        "ledger_service", isolated_schemas, LEDGER_FILE=str(ledger), CHOREO_GROUP_ID=group
    )
    asyncio.run(_publish(kafka, isolated_schemas, range(100)))
    _wait(lambda: len(_handled(ledger)) >= 100, 60, "the first 100")

    stack = local_stack()
    stack.down(["kafka"])
    time.sleep(OUTAGE_S)
    assert service.poll() is None, "the service must wait for the broker, not exit"
    stack.up()

    asyncio.run(_publish(kafka, isolated_schemas, range(100, 200)))
    # The group coordinator can take over a session timeout (45 s) to come back after a restart.
    _wait(lambda: len(set(_handled(ledger))) >= 200, 240, "all 200 after the outage")
    service.send_signal(signal.SIGTERM)
    assert service.wait(30) == 0

    handled = Counter(_handled(ledger))
    assert set(handled) == {f"o-{i}" for i in range(200)}
    topic = Catalog.load(isolated_schemas).topic_of(OrderPlaced.event_type).name
    consumer = Consumer({"bootstrap.servers": kafka, "group.id": group})
    committed = consumer.committed([TopicPartition(topic, p) for p in range(3)], timeout=10)
    consumer.close()
    assert sum(max(tp.offset, 0) for tp in committed) == 200  # committed = handled, no more
    log = next(tmp_path.glob("ledger_service-*.log")).read_text()
    assert "127.0.0.1" in log and ("broker" in log.lower() or "connect" in log.lower())
