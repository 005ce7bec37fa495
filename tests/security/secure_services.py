"""The order saga's services for the secured-cluster tests, plus two that overstep their ACLs.

Names start with ``CHOREO_TEST_PREFIX`` so each test has its own principals, groups and
dead-letter topics. Importable by ``choreo run`` and ``choreo acl`` as ``secure_services:stock``.
"""

from __future__ import annotations

import os
import uuid
from datetime import UTC, datetime
from decimal import Decimal

import choreo
from services.events import (
    OrderCompleted,
    OrderPlaced,
    PaymentAuthorized,
    PaymentMethod,
    ReservedLine,
    StockReserved,
)

PREFIX = os.environ.get("CHOREO_TEST_PREFIX", "")
NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)

stock = choreo.Service(f"{PREFIX}stock", emits=[StockReserved])
payments = choreo.Service(f"{PREFIX}payments", emits=[PaymentAuthorized])
fulfilment = choreo.Service(f"{PREFIX}fulfilment", emits=[OrderCompleted])
snoop = choreo.Service(f"{PREFIX}snoop", emits=[StockReserved])
"""Reads shop.payments too, which the stock principal may not."""
rogue = choreo.Service(f"{PREFIX}rogue", emits=[StockReserved])
"""Writes shop.payments, which the stock principal may not."""


def _reservation(order_id: str) -> uuid.UUID:
    return uuid.uuid5(uuid.NAMESPACE_URL, f"reservation/{order_id}")


def _payment(order_id: str) -> uuid.UUID:
    return uuid.uuid5(uuid.NAMESPACE_URL, f"payment/{order_id}")


@stock.on(OrderPlaced)
@snoop.on(OrderPlaced)
def reserve(event: OrderPlaced, ctx: choreo.Context) -> None:
    lines = [ReservedLine(sku=i.sku, quantity=i.quantity, warehouse="w1") for i in event.items]
    ctx.emit(
        StockReserved(
            order_id=event.order_id,
            reservation_id=_reservation(event.order_id),
            items=lines,
            reserved_at=NOW,
            expires_at=NOW,
        )
    )


@payments.on(StockReserved)
def charge(event: StockReserved, ctx: choreo.Context) -> None:
    ctx.emit(_authorized(event.order_id))


@fulfilment.on(PaymentAuthorized)
def complete(event: PaymentAuthorized, ctx: choreo.Context) -> None:
    ctx.emit(
        OrderCompleted(
            order_id=event.order_id,
            reservation_id=_reservation(event.order_id),
            payment_id=_payment(event.order_id),
            completed_at=NOW,
        )
    )


@snoop.on(PaymentAuthorized)
def peek(event: PaymentAuthorized, ctx: choreo.Context) -> None:
    """Never called: the broker refuses the read."""


@rogue.on(OrderPlaced)
def charge_too(event: OrderPlaced, ctx: choreo.Context) -> None:
    ctx.emit(_authorized(event.order_id))


def _authorized(order_id: str) -> PaymentAuthorized:
    return PaymentAuthorized(
        order_id=order_id,
        payment_id=_payment(order_id),
        amount=Decimal("19.98"),
        currency="EUR",
        method=next(iter(PaymentMethod)),
        authorized_at=NOW,
    )
