"""Parked records on the real broker: list, show, replay once after a fix, purge."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from builders import placed
from dlq_kit import run_dlq

import choreo
from choreo._config import KafkaConfig, ServiceConfig
from choreo._runtime.dead_letters import dlq_topic
from choreo._runtime.runner import ServiceRunner
from choreo._schemas import Catalog
from choreo._transport.registry import make_transport
from services.events import OrderPlaced

pytestmark = pytest.mark.stack
FAST = choreo.RetryPolicy(max_attempts=2, initial_interval_s=0.01, jitter=0.0)


def _service(name: str, handled: list[str], broken: bool) -> choreo.Service:
    svc = choreo.Service(name)

    @svc.on(OrderPlaced, retry=FAST)
    def charge(event: OrderPlaced, ctx: choreo.Context) -> None:
        if broken and event.items[0].sku.startswith("BAD-"):
            raise ValueError(f"cannot charge {event.order_id}")
        handled.append(event.order_id)

    return svc


async def _run_until(
    svc: choreo.Service,
    kafka: str,
    schemas: Path,
    handled: list[str],
    expect: int,
    publish: list[choreo.Event],
) -> None:
    """Run the service (after publishing ``publish``) until it handled ``expect`` events."""
    config = ServiceConfig(kafka=KafkaConfig(bootstrap_servers=kafka), schemas_dir=schemas)
    runner = ServiceRunner(
        svc, config, make_transport("confluent", config.kafka), Catalog.load(schemas)
    )
    await runner.start()
    stop = asyncio.Event()
    task = asyncio.create_task(runner.run(stop))
    if publish:
        async with choreo.Publisher("test", config) as publisher:
            for event in publish:
                await publisher.publish(event)
    deadline = time.monotonic() + 60
    while len(handled) < expect and time.monotonic() < deadline and not task.done():
        await asyncio.sleep(0.1)
    await asyncio.sleep(1.5)  # let the dead letters and commits land
    stop.set()
    await task


def _dlq(kafka: str, *args: str) -> str:
    result = run_dlq(kafka, *args)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_a_dlq_topic_that_does_not_exist_is_an_error_not_an_empty_listing(kafka: str) -> None:
    missing = f"choreo.dlq.nobody-{time.time_ns()}.shop.orders"
    for command in ("show", "replay"):
        result = run_dlq(kafka, command, missing)
        assert result.returncode == 1, result.stdout
        assert f"no such topic: {missing}" in result.stderr


def test_parked_records_are_listed_shown_replayed_once_and_purged(
    kafka: str, isolated_schemas: Path
) -> None:
    name = f"payments-{time.time_ns()}"
    events = [placed(f"o-{i}", sku="BAD-1" if i % 4 == 0 else f"SKU-{i}") for i in range(20)]
    catalog = Catalog.load(isolated_schemas)
    parked_topic = dlq_topic(name, catalog.topic_of(OrderPlaced.event_type).name)

    handled: list[str] = []
    svc = _service(name, handled, broken=True)
    asyncio.run(_run_until(svc, kafka, isolated_schemas, handled, 15, events))
    assert sorted(handled) == sorted(f"o-{i}" for i in range(20) if i % 4)

    listing = _dlq(kafka, "ls")
    [line] = [row for row in listing.splitlines() if row.startswith(parked_topic)]
    assert line.split()[1] == "5"
    assert "handler-error:ValueError x5" in line

    shown = _dlq(kafka, "show", parked_topic)
    assert shown.count("reason   handler-error: builtins.ValueError: cannot charge o-") == 5
    assert "after 2 attempt(s)" in shown and "event    shop.orders.OrderPlaced" in shown

    dry = _dlq(kafka, "replay", parked_topic, "--dry-run").splitlines()
    assert sum("-> shop.orders." in line for line in dry) == 5
    assert dry[-1].startswith("5 selected, would replay 5")
    assert _dlq(kafka, "replay", parked_topic, "--limit", "2").startswith("5 selected, replayed 2")
    assert "replayed 3" in _dlq(kafka, "replay", parked_topic)  # the interrupted rest, once
    assert "replayed 0 to shop.orders." in (last := _dlq(kafka, "replay", parked_topic))
    assert "5 already replayed before" in last

    fixed: list[str] = []
    svc = _service(name, fixed, broken=False)
    asyncio.run(_run_until(svc, kafka, isolated_schemas, fixed, 5, []))
    assert sorted(fixed) == sorted(f"o-{i}" for i in range(0, 20, 4))  # each parked order once

    assert _dlq(kafka, "purge", parked_topic).startswith("deleted 5 records")
    [line] = [row for row in _dlq(kafka, "ls").splitlines() if row.startswith(parked_topic)]
    assert line.split()[1] == "0"
