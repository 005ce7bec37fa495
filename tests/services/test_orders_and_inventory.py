"""The example services, unit-tested on the in-memory transport as a user would."""

from __future__ import annotations

from builders import placed, received

from choreo.testing import TestService
from services import inventory, orders
from services.events import (
    OrderCancelled,
    OrderInvalid,
    OrderPlaced,
    StockReservationFailed,
    StockReserved,
)


def test_a_valid_order_is_placed_with_its_total() -> None:
    with TestService(orders.svc) as t:
        t.send(received("o-1"))
        [order] = t.emitted(OrderPlaced)
    assert order.order_id == "o-1"
    assert str(order.total) == "19.98"
    assert t.emitted(OrderCancelled) == []


def test_an_unsupported_currency_makes_the_order_invalid_with_the_reason() -> None:
    with TestService(orders.svc) as t:
        t.send(received("o-2", currency="XXX"))
        [invalid] = t.emitted(OrderInvalid)
    assert invalid.problem == "currency XXX is not supported"
    assert t.emitted(OrderPlaced) == []


def test_stock_is_reserved_for_every_line() -> None:
    with TestService(inventory.svc) as t:
        t.send(placed("o-3", sku="SKU-7"))
        [reserved] = t.emitted(StockReserved)
    assert [(line.sku, line.quantity) for line in reserved.items] == [("SKU-7", 2)]


def test_an_out_of_stock_line_fails_the_whole_reservation() -> None:
    with TestService(inventory.svc) as t:
        t.send(placed("o-4", sku="OOS-1"))
        [failed] = t.emitted(StockReservationFailed)
    assert failed.unavailable_skus == ["OOS-1"]
    assert t.emitted(StockReserved) == []
