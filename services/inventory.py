"""The inventory service: reserves stock for placed orders, picks it for shipments, releases it.

Run it with ``choreo run services.inventory``. Stock and reservations live in process memory
here to keep the example short; a real service keeps them in its own database (see
``services.approvals`` for one that does, exactly once, with ``ctx.db``).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import choreo
from services.events import (
    OrderPlaced,
    ReleaseStock,
    ReservedLine,
    ShipmentCreated,
    StockCommitFailed,
    StockCommitted,
    StockReleased,
    StockReservationFailed,
    StockReserved,
)
from services.providers import DAMAGED_SKU_PREFIX, OUT_OF_STOCK_SKU_PREFIX

svc = choreo.Service("inventory")

RESERVATION_TTL = timedelta(minutes=15)
WAREHOUSE = "main"
DEFAULT_STOCK = 1_000


@dataclass
class Reservation:
    reservation_id: uuid.UUID
    lines: dict[str, int]


stock: dict[str, int] = {}
reservations: dict[str, Reservation] = {}


def available(sku: str) -> int:
    return 0 if sku.startswith(OUT_OF_STOCK_SKU_PREFIX) else stock.setdefault(sku, DEFAULT_STOCK)


@svc.on(OrderPlaced)
def reserve_stock(event: OrderPlaced, ctx: choreo.Context) -> None:
    """All lines or nothing: a partial reservation would hold stock no order can use."""
    now = datetime.now(UTC)
    existing = reservations.get(event.order_id)
    if existing is None:  # a redelivered order keeps its first reservation
        wanted: dict[str, int] = {}  # two lines of one SKU need their sum in stock
        for line in event.items:
            wanted[line.sku] = wanted.get(line.sku, 0) + line.quantity
        missing = [sku for sku, quantity in wanted.items() if available(sku) < quantity]
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
        for sku, quantity in wanted.items():
            stock[sku] -= quantity
        existing = reservations[event.order_id] = Reservation(uuid.uuid4(), wanted)
    ctx.emit(
        StockReserved(
            order_id=event.order_id,
            reservation_id=existing.reservation_id,
            items=[
                ReservedLine(sku=sku, quantity=quantity, warehouse=WAREHOUSE)
                for sku, quantity in existing.lines.items()
            ],
            reserved_at=now,
            expires_at=now + RESERVATION_TTL,
        )
    )


@svc.on(ShipmentCreated)
def pick_stock(event: ShipmentCreated, ctx: choreo.Context) -> None:
    """Picking is where damaged units show up; the saga then undoes the order."""
    reservation = reservations.get(event.order_id)
    if reservation is None:
        raise LookupError(f"no reservation for order {event.order_id}; cannot pick it")
    now = datetime.now(UTC)
    damaged = next((sku for sku in reservation.lines if sku.startswith(DAMAGED_SKU_PREFIX)), None)
    if damaged is not None:
        ctx.emit(
            StockCommitFailed(
                order_id=event.order_id, sku=damaged, reason="units damaged", failed_at=now
            )
        )
        return
    ctx.emit(
        StockCommitted(
            order_id=event.order_id, reservation_id=reservation.reservation_id, committed_at=now
        )
    )


@svc.on(ReleaseStock)
def release_stock(event: ReleaseStock, ctx: choreo.Context) -> None:
    """Puts the units back (picked ones too) and confirms; releasing twice is harmless."""
    reservation = reservations.pop(event.order_id, None)
    if reservation is not None:
        for sku, quantity in reservation.lines.items():
            stock[sku] += quantity
    ctx.emit(
        StockReleased(
            order_id=event.order_id,
            reservation_id=event.reservation_id,
            released_at=datetime.now(UTC),
        )
    )
