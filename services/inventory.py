"""The inventory service: reserves stock for placed orders.

Run it with ``choreo run services.inventory``. Stock is an in-process table
here; a real service would use its own database.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import choreo
from services.events import OrderPlaced, ReservedLine, StockReservationFailed, StockReserved

svc = choreo.Service("inventory")

RESERVATION_TTL = timedelta(minutes=15)
WAREHOUSE = "main"
DEFAULT_STOCK = 1_000
OUT_OF_STOCK_PREFIX = "OOS-"
"""SKUs starting with this are never in stock (the demo's way to make orders fail)."""

stock: dict[str, int] = {}


def available(sku: str) -> int:
    return 0 if sku.startswith(OUT_OF_STOCK_PREFIX) else stock.setdefault(sku, DEFAULT_STOCK)


@svc.on(OrderPlaced)
def reserve_stock(event: OrderPlaced, ctx: choreo.Context) -> None:
    """All lines or nothing: a partial reservation would hold stock no order can use."""
    now = datetime.now(UTC)
    missing = [line.sku for line in event.items if available(line.sku) < line.quantity]
    if missing:
        ctx.emit(
            StockReservationFailed(
                order_id=event.order_id,
                unavailable_skus=missing,
                reason="insufficient stock",
                failed_at=now,
            )
        )
        return
    for line in event.items:
        stock[line.sku] -= line.quantity
    ctx.emit(
        StockReserved(
            order_id=event.order_id,
            reservation_id=uuid.uuid4(),
            items=[
                ReservedLine(sku=line.sku, quantity=line.quantity, warehouse=WAREHOUSE)
                for line in event.items
            ],
            reserved_at=now,
            expires_at=now + RESERVATION_TTL,
        )
    )
