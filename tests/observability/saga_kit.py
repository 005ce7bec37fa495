"""The traced order saga that tests run on the real stack: its definition, the handlers that
undo its steps, and the traced tracker and services that follow it.

Shared by the saga trace test and the console's browser test, which both need the same saga
world (and would drift apart if each kept its own copy).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from opentelemetry.sdk.trace import TracerProvider
from saga.saga_defs import charge_step, order_step, stock_step

import choreo
from choreo._config import KafkaConfig, ServiceConfig
from choreo._observability import Tracing
from choreo._saga.definition import DEFAULT_COMPENSATION_RETRIES
from choreo._schemas import Catalog
from choreo.saga import Saga, SagaTracker
from services.events import (
    CancellationReason,
    CancelOrder,
    OrderCancelled,
    OrderPlaced,
    ReleaseStock,
    StockReleased,
)

SLOW = timedelta(seconds=60)
"""No compensation is re-emitted during a test: one handling span each."""


def order_saga(name: str, stock_deadline: timedelta | None = None) -> Saga:
    """order → reserve stock → charge, the saga tests' steps with slow compensations."""
    slow = {"compensation_deadline": SLOW, "compensation_retries": DEFAULT_COMPENSATION_RETRIES}
    return Saga(
        name,
        version=1,
        start=OrderPlaced,
        deadline=timedelta(minutes=5),
        steps=[
            replace(order_step, **slow),
            replace(stock_step, deadline=stock_deadline, **slow),
            replace(charge_step, **slow),
        ],
    )


def cancel_order(event: CancelOrder, ctx: choreo.Context) -> None:
    """Orders' compensation: the order is cancelled."""
    ctx.emit(
        OrderCancelled(
            order_id=event.order_id,
            reason=CancellationReason.OTHER,
            detail=event.reason,
            cancelled_at=datetime.now(UTC),
        )
    )


def release_stock(event: ReleaseStock, ctx: choreo.Context) -> None:
    """Inventory's compensation: the reservation is released."""
    ctx.emit(
        StockReleased(
            order_id=event.order_id,
            reservation_id=event.reservation_id,
            released_at=datetime.now(UTC),
        )
    )


def traced_tracker(
    saga: Saga, kafka: str, catalog: Catalog, provider: TracerProvider
) -> SagaTracker:
    """The saga's tracker on the real broker, its spans sent through ``provider``."""
    return SagaTracker(
        [saga],
        ServiceConfig(kafka=KafkaConfig(bootstrap_servers=kafka)),
        instance="a",
        catalog=catalog,
        tracer_provider=provider,
    )


def traced(
    services: Sequence[choreo.Service],
    provider: Callable[[str], TracerProvider],
    group: Callable[[str], str],
) -> tuple[dict[str, str], list[Tracing]]:
    """Each service's consumer group (a fresh one from ``group``) and its tracing."""
    groups = {s.name: group("g") for s in services}
    return groups, [Tracing(s.name, provider(s.name), groups[s.name]) for s in services]
