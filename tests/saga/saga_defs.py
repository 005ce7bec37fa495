"""The order saga of the tests, and factories for the events the tests publish as the services.

Deadlines are short so the deadline and retry paths run in seconds. Importable by the tracker
subprocess as ``saga_defs:order_saga`` (tests/saga is put on its PYTHONPATH).
"""

from __future__ import annotations

import os
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from choreo.saga import CompensationInput, Parallel, Saga, Step, SubSaga
from services.events import (
    Address,
    CancellationReason,
    CancelOrder,
    LineItem,
    OrderApproved,
    OrderCancellationRequested,
    OrderCancelled,
    OrderCompleted,
    OrderPlaced,
    OrderRejected,
    PaymentAuthorized,
    PaymentDeclined,
    PaymentMethod,
    PaymentRefunded,
    RefundPayment,
    ReleaseStock,
    ReservedLine,
    SagaFailed,
    StockCommitted,
    StockReleased,
    StockReservationFailed,
    StockReserved,
)

NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
NAME = os.environ.get("CHOREO_TEST_SAGA_NAME", "order")
"""Each Kafka test module runs its own saga name: its own group and changelog topic."""
SLOW = os.environ.get("CHOREO_TEST_SAGA_SLOW") == "1"
"""Long deadlines, for the crash test: no deadline may fire while the tracker is down."""
COMPENSATION = timedelta(seconds=120 if SLOW else 1.5)
STOCK_DEADLINE = timedelta(seconds=120 if SLOW else 4)
HIGH_VALUE = Decimal("1000")

order_step = Step(
    "order",
    success=[OrderPlaced],
    compensate=CancelOrder,
    compensated=[OrderCancelled],
    compensation_deadline=COMPENSATION,
    compensation_retries=1,
)
stock_step = Step(
    "reserve-stock",
    success=[StockReserved],
    failure=[StockReservationFailed],
    compensate=ReleaseStock,
    compensated=[StockReleased],
    deadline=STOCK_DEADLINE,
    compensation_deadline=COMPENSATION,
    compensation_retries=1,
)
charge_step = Step(
    "charge",
    success=[PaymentAuthorized],
    failure=[PaymentDeclined],
    compensate=RefundPayment,
    compensated=[PaymentRefunded],
    compensation_deadline=COMPENSATION,
    compensation_retries=1,
)
approval_step = Step(
    "approval",
    success=[OrderApproved],
    failure=[OrderRejected],
    when=lambda placed: placed.total > HIGH_VALUE,
    deadline=timedelta(seconds=3),
    needs_compensation=False,
)

order_saga = Saga(
    NAME,
    version=1,
    start=OrderPlaced,
    deadline=timedelta(seconds=300 if SLOW else 30),
    steps=[order_step, stock_step, charge_step, approval_step],
    completed=[OrderCompleted],
    parked=SagaFailed,
    abort=[OrderCancellationRequested],
)
"""Sequential: order → reserve stock → charge → (approval if the total is over 1000); the
customer's cancel aborts it."""

parallel_saga = Saga(
    NAME,
    version=2,
    start=OrderPlaced,
    deadline=timedelta(seconds=300 if SLOW else 30),
    steps=[order_step, Parallel([stock_step, charge_step]), approval_step],
    completed=[OrderCompleted],
    parked=SagaFailed,
)
"""v2 of the same saga: stock and payment at the same time."""

_patient = {"compensation_deadline": timedelta(seconds=3), "compensation_retries": 40}
chaos_saga = replace(
    order_saga,
    version=5,
    deadline=timedelta(seconds=300),
    steps=[
        replace(order_step, **_patient),
        replace(stock_step, deadline=timedelta(seconds=60), **_patient),
        replace(charge_step, **_patient),
        replace(approval_step, deadline=timedelta(seconds=60)),
    ],
)
"""For the chaos test: compensations re-sent every 3 s (a stopped service sees re-sends), never
parked within the test, and deadlines no kill can reach."""

HEARTBEAT = timedelta(seconds=8)
"""Long enough that a busy machine kills the tracker before it runs out the first time."""
heartbeat_saga = Saga(
    NAME,
    version=1,
    start=OrderPlaced,
    steps=[
        order_step,
        replace(stock_step, deadline=None, progress=[StockCommitted], heartbeat=HEARTBEAT),
    ],
)
"""A warehouse that reports progress while it reserves (``StockCommitted`` stands in for a
progress event): silent for ``HEARTBEAT``, the reservation is given up."""

fulfilment_v1 = Saga(
    "fulfilment",
    version=1,
    start=OrderPlaced,
    deadline=timedelta(seconds=300 if SLOW else 10),
    steps=[stock_step, charge_step],
)
"""A saga of its own, used as one step of the composed order saga below."""

fulfilment_v2 = replace(fulfilment_v1, version=2, steps=[Parallel([stock_step, charge_step])])
"""Stock and payment at the same time."""

composed_saga = Saga(
    NAME,
    version=3,
    start=OrderPlaced,
    deadline=timedelta(seconds=300 if SLOW else 30),
    steps=[order_step, SubSaga(fulfilment_v1), approval_step],
    completed=[OrderCompleted],
    parked=SagaFailed,
)
"""order → fulfilment (reserve stock → charge) → approval if over 1000."""

composed_v4 = replace(composed_saga, version=4, steps=[order_step, SubSaga(fulfilment_v2)])
composed_versions = [composed_saga, composed_v4]
"""v3 in flight keeps fulfilment v1; new sagas run v4 with fulfilment v2."""

BOOM = "666"
"""An order total that makes the fragile saga's user code raise."""
RETENTION = timedelta(seconds=8)


def _needs_approval(placed: OrderPlaced) -> bool:
    if placed.total == Decimal(BOOM):
        raise ValueError("no approval rule for this total")
    return placed.total > HIGH_VALUE


def _release(given: CompensationInput) -> ReleaseStock:
    if given.start.total == Decimal(BOOM) + 1:  # type: ignore[attr-defined]
        raise LookupError("warehouse unknown")
    reserved = given.result
    assert isinstance(reserved, StockReserved)
    return ReleaseStock(
        order_id=reserved.order_id,
        reservation_id=reserved.reservation_id,
        reason=given.reason,
        requested_at=given.now,
    )


fragile_saga = replace(
    order_saga,
    steps=[
        order_step,
        replace(stock_step, build=_release),
        charge_step,
        replace(approval_step, when=_needs_approval),
    ],
    retention=RETENTION,
)
"""The order saga with user code that raises for some totals, and a short retention."""

fragile_v2 = replace(fragile_saga, version=2)
"""Loaded alone, it strands the fragile saga's v1 sagas: they are forgotten after retention."""


def placed(order_id: str, total: str = "19.98") -> OrderPlaced:
    return OrderPlaced(
        order_id=order_id,
        customer_id="c-1",
        items=[LineItem(sku="SKU-1", quantity=2, unit_price=Decimal("9.99"))],
        total=Decimal(total),
        currency="EUR",
        shipping_address=Address(line1="1 Main St", city="Ghent", postal_code="9000", country="BE"),
        placed_at=NOW,
    )


def reserved(order_id: str) -> StockReserved:
    return StockReserved(
        order_id=order_id,
        reservation_id=uuid.uuid5(uuid.NAMESPACE_URL, f"reservation/{order_id}"),
        items=[ReservedLine(sku="SKU-1", quantity=2, warehouse="w1")],
        reserved_at=NOW,
        expires_at=NOW + timedelta(hours=1),
    )


def reservation_failed(order_id: str) -> StockReservationFailed:
    return StockReservationFailed(
        order_id=order_id, unavailable_skus=["SKU-1"], reason="sold out", failed_at=NOW
    )


def released(order_id: str) -> StockReleased:
    return StockReleased(
        order_id=order_id,
        reservation_id=uuid.uuid5(uuid.NAMESPACE_URL, f"reservation/{order_id}"),
        released_at=NOW,
    )


def authorized(order_id: str) -> PaymentAuthorized:
    return PaymentAuthorized(
        order_id=order_id,
        payment_id=uuid.uuid5(uuid.NAMESPACE_URL, f"payment/{order_id}"),
        amount=Decimal("19.98"),
        currency="EUR",
        method=next(iter(PaymentMethod)),
        authorized_at=NOW,
    )


def declined(order_id: str) -> PaymentDeclined:
    return PaymentDeclined(
        order_id=order_id,
        amount=Decimal("19.98"),
        currency="EUR",
        decline_code="insufficient_funds",
        declined_at=NOW,
    )


def refunded(order_id: str) -> PaymentRefunded:
    return PaymentRefunded(
        order_id=order_id,
        payment_id=uuid.uuid5(uuid.NAMESPACE_URL, f"payment/{order_id}"),
        amount=Decimal("19.98"),
        currency="EUR",
        refunded_at=NOW,
    )


def cancelled(order_id: str) -> OrderCancelled:
    return OrderCancelled(
        order_id=order_id, reason=CancellationReason.OTHER, detail="saga", cancelled_at=NOW
    )


def cancel_requested(order_id: str, by: str = "c-1") -> OrderCancellationRequested:
    return OrderCancellationRequested(
        order_id=order_id, requested_by=by, reason="changed my mind", requested_at=NOW
    )


def progress(order_id: str) -> StockCommitted:
    return StockCommitted(
        order_id=order_id,
        reservation_id=uuid.uuid5(uuid.NAMESPACE_URL, f"reservation/{order_id}"),
        committed_at=NOW,
    )


def approved(order_id: str) -> OrderApproved:
    return OrderApproved(order_id=order_id, approver="alice", approved_at=NOW)


def rejected(order_id: str) -> OrderRejected:
    return OrderRejected(order_id=order_id, approver="alice", comment="too risky", rejected_at=NOW)


def completed(order_id: str) -> OrderCompleted:
    return OrderCompleted(
        order_id=order_id,
        reservation_id=uuid.uuid5(uuid.NAMESPACE_URL, f"reservation/{order_id}"),
        payment_id=uuid.uuid5(uuid.NAMESPACE_URL, f"payment/{order_id}"),
        completed_at=NOW,
    )


COMPENSATION_OF = {
    "order": CancelOrder,
    "reserve-stock": ReleaseStock,
    "charge": RefundPayment,
}
