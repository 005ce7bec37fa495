"""A handler failing k times then succeeding, on the real broker: in place, then retry topics."""

from __future__ import annotations

import asyncio
import itertools
import time
from pathlib import Path

import pytest
from builders import placed

import choreo
from choreo._config import KafkaConfig, ServiceConfig
from choreo._runtime.runner import ServiceRunner
from choreo._schemas import Catalog
from choreo._transport.registry import make_transport
from services.events import OrderPlaced

pytestmark = pytest.mark.stack
SLACK_S = 1.5


def test_k_failures_then_success_with_the_policy_delays_and_other_keys_flowing(
    kafka: str, isolated_schemas: Path
) -> None:
    policy = choreo.RetryPolicy(
        max_attempts=2, initial_interval_s=0.05, jitter=0.0, delays_s=(1.0, 2.0)
    )
    svc = choreo.Service(f"carrier-{time.time_ns()}")
    tries: list[tuple[str, int, float]] = []

    @svc.on(OrderPlaced, retry=policy)
    def ship(event: OrderPlaced, ctx: choreo.Context) -> None:
        tries.append((event.order_id, ctx.attempt, time.monotonic()))
        if event.order_id == "flaky" and ctx.attempt <= 3:
            raise ConnectionError("carrier API down")

    config = ServiceConfig(kafka=KafkaConfig(bootstrap_servers=kafka), schemas_dir=isolated_schemas)

    async def run() -> None:
        runner = ServiceRunner(
            svc, config, make_transport("confluent", config.kafka), Catalog.load(isolated_schemas)
        )
        await runner.start()
        stop = asyncio.Event()
        task = asyncio.create_task(runner.run(stop))
        async with choreo.Publisher("test", config) as publisher:
            await publisher.publish(placed("flaky"))
            for i in range(50):
                await publisher.publish(placed(f"other-{i}"))
        deadline = time.monotonic() + 60
        while not any(o == "flaky" and a == 4 for o, a, _ in tries) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        stop.set()
        await task

    asyncio.run(run())

    flaky = [(attempt, at) for order, attempt, at in tries if order == "flaky"]
    assert [attempt for attempt, _ in flaky] == [1, 2, 3, 4]  # succeeded once, after 3 retries
    gaps = [b - a for (_, a), (_, b) in itertools.pairwise(flaky)]
    assert 0.04 <= gaps[0] < 0.05 + SLACK_S  # in place
    assert 1.0 <= gaps[1] < 1.0 + SLACK_S  # retry topic 1
    assert 2.0 <= gaps[2] < 2.0 + SLACK_S  # retry topic 2
    others = [at for order, _, at in tries if order.startswith("other-")]
    assert len(others) == 50
    # Nobody waited for the flaky order's delayed retries: a partition held for them would
    # hand the others over after its last attempt, 3 s on. (Not "before its first delayed
    # retry", 1 s on: publishing the 50, one awaited send each, took longer than that in CI.)
    assert max(others) < flaky[3][1]
