"""A container killed under load is restarted by its restart policy, and every saga still ends
as expected: the orders service and the order saga's tracker run as containers, each one's
process is killed with SIGKILL mid-run (a crash, not ``docker kill``, which counts as a stop).

Valid orders are placed by the orders container; the test then fails their stock reservation,
so the tracker must compensate (CancelOrder) and the orders container cancel them
(OrderCancelled, out of stock). Invalid orders end at OrderInvalid with nothing to undo.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
import uuid
from collections import defaultdict
from pathlib import Path
from typing import Any

from builders import received, reservation_failed
from confluent_kafka import Consumer
from container_kit import Engine, app, health, inspect, wait_for
from runtime.runtime_kit import fast_failover, publish

import choreo
from choreo._saga.inspect import load_states
from choreo._saga.state import TERMINAL
from choreo._schemas import Catalog, Codec
from services.events import (
    CancellationReason,
    CancelOrder,
    OrderCancelled,
    OrderInvalid,
    OrderPlaced,
)
from services.order_saga import order_saga

COUNT = 60
WATCHED = (OrderPlaced, OrderInvalid, CancelOrder, OrderCancelled)


class Outcomes:
    """Every watched event of the test's topics, by type and order id."""

    def __init__(self, kafka: str, schemas: Path) -> None:
        self.catalog = Catalog.load(schemas)
        self.codec = Codec(self.catalog)
        self.codec.register(*WATCHED)
        self.types = {model.event_type for model in WATCHED}
        self.correlation: dict[str, str] = {}
        """The saga of each order: the tracker keys sagas by correlation id."""
        self.seen: dict[str, dict[str, list[Any]]] = defaultdict(lambda: defaultdict(list))
        topics = sorted({self.catalog.topic_of(model.event_type).name for model in WATCHED})
        self.consumer = Consumer(
            {
                "bootstrap.servers": kafka,
                "group.id": f"outcomes-{time.time_ns()}",
                "auto.offset.reset": "earliest",
                "enable.auto.commit": False,
                "topic.metadata.refresh.interval.ms": 1000,
            }
        )
        self.consumer.subscribe(topics)

    def read(self) -> None:
        for message in self.consumer.consume(500, 0.5):
            if message.error() is None and self.codec.event_type_of(message.value()) in self.types:
                event = self.codec.decode_any(message.value())
                assert isinstance(event, WATCHED)
                self.seen[type(event).__name__][event.order_id].append(event)
                headers = dict(message.headers() or [])
                self.correlation[event.order_id] = headers["choreo_correlation_id"].decode()

    def orders(self, kind: str) -> set[str]:
        return set(self.seen[kind])

    def summary(self) -> str:
        return ", ".join(f"{kind}: {len(self.seen[kind])}" for kind in self.seen)


async def _fail_reservations(
    kafka: str, schemas: Path, orders: set[str], correlation: dict[str, str]
) -> None:
    """What inventory would say for each order, in the order's own saga."""
    config = choreo.ServiceConfig(
        kafka=choreo.KafkaConfig(bootstrap_servers=kafka), schemas_dir=schemas
    )
    async with choreo.Publisher("inventory", config) as publisher:
        for order in orders:
            await publisher.publish(reservation_failed(order), correlation_id=correlation[order])


def _finished_sagas(kafka: str, orders: set[str]) -> set[str]:
    """The orders whose saga the tracker's changelog holds as ended.

    The changelog is the order saga's own, shared with every tracker of that saga on this
    broker (the demo's too): a saga left compensating here would be restored there, and its
    compensation retried onto the demo's topics."""
    states = load_states({"bootstrap.servers": kafka}, order_saga.name)
    return {s.saga_id for s in states if s.saga_id in orders and s.status in TERMINAL}


def _crash(container_id: str) -> None:
    """SIGKILL the container's process from the host, as the kernel's OOM killer would."""
    os.kill(int(inspect(container_id, "{{.State.Pid}}")), signal.SIGKILL)


def test_killed_containers_restart_and_every_saga_ends_as_expected(
    engine: Engine, kafka: str, isolated_schemas: Path, tmp_path: Path
) -> None:
    config = fast_failover(tmp_path)
    mounts = {config: "/config/service.toml"}
    # Ids of this run only: the orders service's idempotency store (PostgreSQL) outlives runs,
    # and a compensation's id is fixed by its saga id, so a saga id seen by an earlier run
    # would be answered from that run's stored outputs (on that run's topic).
    run = f"{tmp_path.name}-{uuid.uuid4().hex[:8]}"
    orders = app(
        engine,
        ["choreo", "run", "--config", "/config/service.toml", "services.orders"],
        kafka,
        isolated_schemas,
        mounts,
        restart="on-failure",
        CHOREO_GROUP_ID=f"orders-{run}",
    )
    # Its own instance id: the tracker's transactional id must not fence another tracker.
    tracker = app(
        engine,
        [
            "choreo",
            "saga",
            "--config",
            "/config/service.toml",
            "run",
            "--instance",
            run,
            "services.order_saga",
        ],
        kafka,
        isolated_schemas,
        mounts,
        restart="on-failure",
    )
    valid = {f"ok-{run}-{i}" for i in range(COUNT) if i % 4}
    bad = {f"bad-{run}-{i}" for i in range(COUNT) if not i % 4}
    with orders, tracker:
        ids = {
            name: c.get_wrapped_container().id
            for name, c in (("orders", orders), ("tracker", tracker))
        }
        wait_for("orders healthy", lambda: health(engine, ids["orders"]) == "healthy", 120, 2)
        outcomes = Outcomes(kafka, isolated_schemas)
        events = [
            received(o) if o in valid else received(o, currency="XYZ") for o in sorted(valid | bad)
        ]
        asyncio.run(publish(kafka, isolated_schemas, events))

        def placed_some() -> bool:
            outcomes.read()
            return len(outcomes.orders("OrderPlaced")) >= 10

        wait_for("first orders placed", placed_some, 120, 0, outcomes.summary, orders)
        _crash(ids["orders"])
        failed: set[str] = set()

        def all_failed_and_some_cancelled() -> bool:
            outcomes.read()
            new = outcomes.orders("OrderPlaced") - failed
            if new:
                asyncio.run(_fail_reservations(kafka, isolated_schemas, new, outcomes.correlation))
                failed.update(new)
            return failed == valid and len(outcomes.orders("CancelOrder")) >= 10

        wait_for(
            "every valid order placed",
            all_failed_and_some_cancelled,
            180,
            0,
            outcomes.summary,
            tracker,
        )
        _crash(ids["tracker"])

        def every_saga_ended() -> bool:
            outcomes.read()
            return (
                outcomes.orders("OrderCancelled") >= valid
                and outcomes.orders("OrderInvalid") >= bad
                and _finished_sagas(kafka, valid | bad) == valid | bad
            )

        wait_for("every saga ended", every_saga_ended, 180, 0, outcomes.summary, tracker)
        restarts = {name: int(inspect(cid, "{{.RestartCount}}")) for name, cid in ids.items()}
    print(f"restarts: {restarts}; placed {len(failed)}, invalid {len(bad)}, all ended")
    assert restarts == {"orders": 1, "tracker": 1}
    assert outcomes.orders("OrderInvalid") == bad and outcomes.orders("OrderPlaced") == valid
    assert outcomes.orders("CancelOrder") == outcomes.orders("OrderCancelled") == valid
    for order in valid:
        cancelled: list[OrderCancelled] = outcomes.seen["OrderCancelled"][order]
        assert {c.reason for c in cancelled} == {CancellationReason.OUT_OF_STOCK}, order
