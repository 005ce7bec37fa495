"""``choreo run`` services on the real broker: the flow, graceful shutdown, start-up errors."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
from builders import received
from confluent_kafka import Consumer, TopicPartition
from runtime_kit import publish, read_topic

from choreo import _headers
from choreo._schemas import Catalog, Codec
from services.events import OrderPlaced, StockReservationFailed, StockReserved

pytestmark = pytest.mark.stack
ROOT = Path(__file__).resolve().parents[2]


def _committed(kafka: str, group: str, topic: str, partitions: int) -> dict[int, int]:
    consumer = Consumer({"bootstrap.servers": kafka, "group.id": group})
    offsets = consumer.committed([TopicPartition(topic, p) for p in range(partitions)], timeout=10)
    consumer.close()
    return {tp.partition: max(tp.offset, 0) for tp in offsets}


def _wait_for(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def _stop(process: subprocess.Popen[str], timeout_s: float = 30) -> int:
    process.send_signal(signal.SIGTERM)
    return process.wait(timeout=timeout_s)


def test_two_services_choreograph_an_order_flow(
    kafka: str, isolated_schemas: Path, run_service: Callable[..., subprocess.Popen[str]]
) -> None:
    catalog = Catalog.load(isolated_schemas)
    orders = run_service("services.orders", isolated_schemas)
    inventory = run_service("services.inventory", isolated_schemas)
    events = [
        received(f"order-{i}", sku="OOS-1" if i % 10 == 0 else f"SKU-{i}") for i in range(200)
    ]
    asyncio.run(publish(kafka, isolated_schemas, events))

    inventory_topic = catalog.topic_of(StockReserved.event_type).name
    outcomes = read_topic(kafka, inventory_topic, expected=200)
    codec = Codec(catalog)
    types = Counter(codec.event_type_of(value) for value, _ in outcomes)
    assert types == {StockReserved.event_type: 180, StockReservationFailed.event_type: 20}
    correlations = {dict(headers)[_headers.CORRELATION].decode() for _, headers in outcomes}
    assert correlations == {e.order_id for e in events}  # each flow keeps its start's key

    assert _stop(orders) == 0
    assert _stop(inventory) == 0
    orders_topic = catalog.topic_of(OrderPlaced.event_type).name
    committed = _committed(kafka, "orders", orders_topic, 3)
    assert sum(committed.values()) >= 200  # everything orders saw is committed after SIGTERM


def test_sigterm_drains_commits_what_was_handled_and_a_restart_loses_nothing(
    kafka: str,
    isolated_schemas: Path,
    tmp_path: Path,
    run_service: Callable[..., subprocess.Popen[str]],
) -> None:
    ledger = tmp_path / "ledger.txt"
    env = {"LEDGER_FILE": str(ledger), "LEDGER_DELAY_S": "0.02", "CHOREO_GROUP_ID": "ledger"}
    topic = Catalog.load(isolated_schemas).topic_of(OrderPlaced.event_type).name
    from builders import placed

    asyncio.run(publish(kafka, isolated_schemas, [placed(f"o-{i}") for i in range(300)]))
    service = run_service("ledger_service", isolated_schemas, **env)
    _wait_for(
        lambda: ledger.exists() and len(ledger.read_text().splitlines()) >= 30, 60, "30 handled"
    )
    assert _stop(service) == 0

    handled = [line.split() for line in ledger.read_text().splitlines()]
    committed = _committed(kafka, "ledger", topic, 3)
    per_partition = Counter(int(partition) for _, partition, _ in handled)
    assert 30 <= len(handled) < 300  # stopped mid-stream
    assert {p: committed.get(p, 0) for p in per_partition} == dict(per_partition)

    # the restart keeps Python's collector settings: at-least-once does not depend on them
    restarted = run_service("ledger_service", isolated_schemas, CHOREO_TUNE_GC="false", **env)
    _wait_for(lambda: len(ledger.read_text().splitlines()) >= 300, 60, "all 300 handled")
    assert _stop(restarted) == 0
    orders = [order for order, _, _ in (line.split() for line in ledger.read_text().splitlines())]
    assert sorted(set(orders)) == sorted(f"o-{i}" for i in range(300))
    assert len(orders) == 300  # no duplicates after a graceful stop
    first, second = (tmp_path / f"ledger_service-{n}.log" for n in (0, 1))
    assert "gc: start-up heap frozen (" in first.read_text()
    assert "gc: Python's defaults (tune_gc = false)" in second.read_text()
    assert "gc: start-up heap frozen" not in second.read_text()


def _run_to_exit(
    module: str, schemas: Path, timeout_s: float = 60, **env: str
) -> subprocess.CompletedProcess[str]:
    import os

    return subprocess.run(
        [sys.executable, "-m", "choreo._cli.main", "run", module],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), "CHOREO_SCHEMAS_DIR": str(schemas), **env},
        capture_output=True,
        text=True,
        timeout=timeout_s,
    )


def test_an_unreachable_broker_is_a_one_line_error_naming_it(isolated_schemas: Path) -> None:
    result = _run_to_exit(
        "services.orders", isolated_schemas, CHOREO_BOOTSTRAP_SERVERS="127.0.0.1:1"
    )
    assert result.returncode == 1
    assert "127.0.0.1:1" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_second_service_in_the_same_group_is_refused(
    kafka: str, isolated_schemas: Path, run_service: Callable[..., subprocess.Popen[str]]
) -> None:
    group = f"shared-{time.time_ns()}"
    first = run_service("services.orders", isolated_schemas, CHOREO_GROUP_ID=group)
    asyncio.run(publish(kafka, isolated_schemas, [received("warm-up")]))
    time.sleep(3)  # let the first member join
    result = _run_to_exit(
        "services.inventory",
        isolated_schemas,
        CHOREO_BOOTSTRAP_SERVERS=kafka,
        CHOREO_GROUP_ID=group,
    )
    assert result.returncode == 1
    assert f"consumer group {group!r} already has members of another service" in result.stderr
    assert "choreo-orders" in result.stderr
    assert _stop(first) == 0


def test_a_module_without_a_service_is_a_clear_error(isolated_schemas: Path) -> None:
    result = _run_to_exit("services.events", isolated_schemas)
    assert result.returncode == 1
    assert "services.events defines 0 choreo.Service objects" in result.stderr


def test_a_sigterm_while_it_starts_ends_the_service_cleanly(
    isolated_schemas: Path, run_service: Callable[..., subprocess.Popen[str]], tmp_path: Path
) -> None:
    """An orchestrator may stop a pod that is still creating topics and joining its group."""
    service = run_service("services.orders", isolated_schemas)
    log = tmp_path / "services_orders-0.log"
    deadline = time.monotonic() + 60
    while "choreo service 'orders'" not in (log.read_text() if log.exists() else ""):
        assert time.monotonic() < deadline and service.poll() is None, "no start-up summary"
        time.sleep(0.005)
    service.send_signal(signal.SIGTERM)  # its start (topics, group, schedules) is under way
    assert service.wait(timeout=60) == 0, log.read_text()
    assert "Traceback" not in log.read_text()
