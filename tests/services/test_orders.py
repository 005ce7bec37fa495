"""The orders service on the in-memory transport: what gets placed, what is turned away, and
the reason a customer reads on a cancelled order."""

from __future__ import annotations

from decimal import Decimal

import pytest
from builders import cancel_order, new_order_id, received

from choreo._transport.base import Record
from choreo.testing import TestService
from services import orders
from services.events import (
    CancellationReason,
    CancelOrder,
    LineItem,
    OrderCancelled,
    OrderInvalid,
    OrderPlaced,
)


def test_a_valid_order_is_placed_with_the_total_of_its_lines() -> None:
    order_id = new_order_id()
    order = received(order_id, quantity=3, unit_price="19.99")
    order.items.append(LineItem(sku="SKU-2", quantity=1, unit_price=Decimal("5.00")))
    with TestService(orders.svc) as t:
        t.send(order)
        [placed] = t.emitted(OrderPlaced)
    assert placed.order_id == order_id
    assert placed.total == Decimal("64.97")
    assert [line.sku for line in placed.items] == ["SKU-1", "SKU-2"]
    assert placed.shipping_address == order.shipping_address
    assert t.emitted(OrderInvalid) == []


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"currency": "XXX"}, "currency XXX is not supported"),
        ({"items": []}, "order has no items"),
        (
            {"items": [LineItem(sku="SKU-1", quantity=0, unit_price=Decimal("1.00"))]},
            "every line needs a positive quantity",
        ),
    ],
)
def test_an_order_no_later_step_could_fix_is_invalid_with_the_reason(
    change: dict[str, object], problem: str
) -> None:
    order = received(new_order_id()).model_copy(update=change)
    with TestService(orders.svc) as t:
        t.send(order)
        [invalid] = t.emitted(OrderInvalid)
    assert invalid.order_id == order.order_id
    assert invalid.problem == problem
    assert t.emitted(OrderPlaced) == []


@pytest.mark.parametrize(
    ("saga_reason", "customer_reason"),
    [
        (
            "step 'reserve-stock' failed (shop.inventory.StockReservationFailed)",
            CancellationReason.OUT_OF_STOCK,
        ),
        (
            "step 'authorize-payment' failed (shop.payments.PaymentDeclined)",
            CancellationReason.PAYMENT_DECLINED,
        ),
        (
            "step 'fraud-check' failed (shop.fraud.FraudSuspected)",
            CancellationReason.FRAUD_SUSPECTED,
        ),
        (
            "step 'approval' failed (shop.approvals.OrderRejected)",
            CancellationReason.REJECTED,
        ),
        (
            "step 'create-shipment' failed (shop.shipping.ShipmentFailed)",
            CancellationReason.UNDELIVERABLE,
        ),
        (
            "step 'commit-stock' failed (shop.inventory.StockCommitFailed)",
            CancellationReason.DAMAGED_STOCK,
        ),
        ("step 'approval' missed its deadline", CancellationReason.OTHER),
    ],
)
def test_a_cancelled_order_tells_the_customer_why_in_a_category(
    saga_reason: str, customer_reason: CancellationReason
) -> None:
    order_id = new_order_id()  # never placed here: cancelling confirms for any order
    with TestService(orders.svc) as t:
        t.send(cancel_order(order_id, reason=saga_reason))
        [cancelled] = t.emitted(OrderCancelled)
    assert cancelled.order_id == order_id
    assert cancelled.reason is customer_reason
    assert cancelled.detail == saga_reason


@pytest.mark.stack
@pytest.mark.usefixtures("shop_db")
def test_a_cancellation_the_tracker_re_sent_with_its_first_event_id_cancels_once() -> None:
    order_id = new_order_id()
    with TestService(orders.svc, idempotency=orders.svc.idempotency) as t:
        topic = t.catalog.topic_of(CancelOrder.event_type).name
        t.send(cancel_order(order_id), correlation_id=order_id)
        [command] = [r for r in t.records(topic) if _type(r) == CancelOrder.event_type]
        t.send_raw(topic, command.value, key=command.key, headers=command.headers)
        cancelled = [r for r in t.records(topic) if _type(r) == OrderCancelled.event_type]
    assert len(cancelled) == 2  # the first notice, re-sent as it was stored
    assert len({r.header("ce_id") for r in cancelled}) == 1  # one event id: consumers drop it


def _type(record: Record) -> str:
    return (record.header("ce_type") or b"").decode()
