"""The inventory service on the in-memory transport: reservations, picking and releasing."""

from __future__ import annotations

from decimal import Decimal

import pytest
from builders import new_order_id, placed, release_stock, shipment_created

from choreo.testing import TestService
from services import inventory
from services.events import (
    LineItem,
    StockCommitFailed,
    StockCommitted,
    StockReleased,
    StockReservationFailed,
    StockReserved,
)

pytestmark = [pytest.mark.stack, pytest.mark.usefixtures("shop_db")]


def _sku(tag: str) -> str:
    """A SKU of this test only: stock is the service's, shared by every test in the process."""
    return new_order_id(tag)


def test_stock_is_reserved_for_every_line_and_held() -> None:
    sku, other = _sku("SKU"), _sku("SKU")
    order = placed(new_order_id(), sku=sku, quantity=3)
    order.items.append(LineItem(sku=other, quantity=1, unit_price=Decimal("1.00")))
    with TestService(inventory.svc, idempotency=inventory.svc.idempotency) as t:
        t.send(order)
        [reserved] = t.emitted(StockReserved)
    assert reserved.order_id == order.order_id
    assert [(line.sku, line.quantity) for line in reserved.items] == [(sku, 3), (other, 1)]
    assert reserved.expires_at - reserved.reserved_at == inventory.RESERVATION_TTL
    assert inventory.available(sku) == inventory.DEFAULT_STOCK - 3
    assert inventory.available(other) == inventory.DEFAULT_STOCK - 1


def test_an_out_of_stock_line_fails_the_whole_reservation_and_holds_nothing() -> None:
    sku = _sku("SKU")
    order = placed(new_order_id(), sku="OOS-1")
    order.items.append(LineItem(sku=sku, quantity=5, unit_price=Decimal("1.00")))
    with TestService(inventory.svc, idempotency=inventory.svc.idempotency) as t:
        t.send(order)
        [failed] = t.emitted(StockReservationFailed)
    assert failed.unavailable_skus == ["OOS-1"]
    assert t.emitted(StockReserved) == []
    assert inventory.available(sku) == inventory.DEFAULT_STOCK


def test_two_lines_of_one_sku_need_their_sum_in_stock() -> None:
    sku = _sku("SKU")
    half = inventory.DEFAULT_STOCK // 2 + 1
    order = placed(new_order_id(), sku=sku, quantity=half)
    order.items.append(LineItem(sku=sku, quantity=half, unit_price=Decimal("1.00")))
    with TestService(inventory.svc, idempotency=inventory.svc.idempotency) as t:
        t.send(order)
        [failed] = t.emitted(StockReservationFailed)
    assert failed.unavailable_skus == [sku]
    assert t.emitted(StockReserved) == []
    assert inventory.available(sku) == inventory.DEFAULT_STOCK


def test_a_redelivered_order_keeps_its_first_reservation() -> None:
    sku = _sku("SKU")
    order = placed(new_order_id(), sku=sku)
    with TestService(inventory.svc, idempotency=inventory.svc.idempotency) as t:
        t.send(order)
        t.send(order)
        first, second = t.emitted(StockReserved)
    assert second.reservation_id == first.reservation_id
    assert inventory.available(sku) == inventory.DEFAULT_STOCK - 2


def test_picking_a_reserved_order_commits_its_reservation() -> None:
    order_id = new_order_id()
    with TestService(inventory.svc, idempotency=inventory.svc.idempotency) as t:
        t.send(placed(order_id, sku=_sku("SKU")))
        t.send(shipment_created(order_id))
        [reserved] = t.emitted(StockReserved)
        [committed] = t.emitted(StockCommitted)
    assert committed.reservation_id == reserved.reservation_id
    assert t.emitted(StockCommitFailed) == []


def test_damaged_units_found_at_picking_fail_the_commit_naming_the_sku() -> None:
    order_id = new_order_id()
    with TestService(inventory.svc, idempotency=inventory.svc.idempotency) as t:
        t.send(placed(order_id, sku="DMG-7"))
        t.send(shipment_created(order_id))
        [failed] = t.emitted(StockCommitFailed)
    assert (failed.order_id, failed.sku, failed.reason) == (order_id, "DMG-7", "units damaged")
    assert t.emitted(StockCommitted) == []


def test_picking_an_order_with_no_reservation_is_dead_lettered_not_committed() -> None:
    order_id = new_order_id()
    with TestService(inventory.svc, idempotency=inventory.svc.idempotency, raise_errors=False) as t:
        t.send(shipment_created(order_id))
        [parked] = t.dead_letters("shop.shipping")
    assert t.emitted(StockCommitted) == []
    assert t.emitted(StockCommitFailed) == []
    assert parked.header("choreo_dlq_error_type") == b"builtins.LookupError"
    assert order_id.encode() in (parked.header("choreo_dlq_error_message") or b"")


def test_releasing_puts_the_units_back_and_confirms() -> None:
    sku = _sku("SKU")
    order_id = new_order_id()
    with TestService(inventory.svc, idempotency=inventory.svc.idempotency) as t:
        t.send(placed(order_id, sku=sku, quantity=4))
        t.send(release_stock(order_id))
        [released] = t.emitted(StockReleased)
    assert released.order_id == order_id
    assert inventory.available(sku) == inventory.DEFAULT_STOCK


def test_releasing_an_unknown_or_released_order_only_confirms() -> None:
    sku = _sku("SKU")
    order_id = new_order_id()
    with TestService(inventory.svc, idempotency=inventory.svc.idempotency) as t:
        t.send(placed(order_id, sku=sku))
        t.send(release_stock(order_id))
        t.send(release_stock(order_id))
        t.send(release_stock(new_order_id()))
        assert len(t.emitted(StockReleased)) == 3
    assert inventory.available(sku) == inventory.DEFAULT_STOCK
