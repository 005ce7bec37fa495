"""The inventory service: reserves stock for placed orders, picks it for shipments, releases it.

Run it with ``choreo run services.inventory``. Stock and reservations are tables in
PostgreSQL, written through ``ctx.db`` in the transaction that marks the event handled
(``PostgresIdempotency``): a redelivered event, or one handled again after a crash, never
reserves or releases twice, and a restart forgets nothing.
"""

from __future__ import annotations

import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

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
from services.settings import DSN

RESERVATION_TTL = timedelta(minutes=15)
WAREHOUSE = "main"
DEFAULT_STOCK = 1_000


STOCK = "CREATE TABLE IF NOT EXISTS shop_stock (sku TEXT PRIMARY KEY, available INTEGER NOT NULL)"
RESERVATIONS = """CREATE TABLE IF NOT EXISTS shop_reservations (
    order_id TEXT PRIMARY KEY, reservation_id UUID NOT NULL, lines JSONB NOT NULL)"""
"""A reservation's units per SKU; the row goes when the units go back on the shelf."""

TABLES = (STOCK, RESERVATIONS)

svc = choreo.Service("inventory", idempotency=choreo.PostgresIdempotency(DSN, setup=TABLES))


def _initial(sku: str) -> int:
    """What a warehouse holds of a SKU it has not counted yet (the demo's endless supply)."""
    return 0 if sku.startswith(OUT_OF_STOCK_SKU_PREFIX) else DEFAULT_STOCK


def available(sku: str, dsn: str = DSN) -> int:
    """Units of ``sku`` on the shelf and not reserved."""
    with psycopg.connect(dsn) as connection:
        row = connection.execute("SELECT available FROM shop_stock WHERE sku = %s", (sku,))
        found = row.fetchone()
    return _initial(sku) if found is None else int(found[0])


def _reservation(
    db: psycopg.Connection[Any], order_id: str
) -> tuple[uuid.UUID, dict[str, int]] | None:
    row = db.execute(
        "SELECT reservation_id, lines FROM shop_reservations WHERE order_id = %s", (order_id,)
    ).fetchone()
    return None if row is None else (row[0], row[1])


@svc.on(OrderPlaced)
def reserve_stock(event: OrderPlaced, ctx: choreo.Context) -> None:
    """All lines or nothing: a partial reservation would hold stock no order can use."""
    now = datetime.now(UTC)
    existing = _reservation(ctx.db, event.order_id)
    if existing is None:  # a redelivered order keeps its first reservation
        wanted = Counter[str]()  # two lines of one SKU need their sum in stock
        for line in event.items:
            wanted[line.sku] += line.quantity
        skus = sorted(wanted)  # locked in one order, so two orders never deadlock
        for sku in skus:
            ctx.db.execute(
                "INSERT INTO shop_stock VALUES (%s, %s) ON CONFLICT DO NOTHING",
                (sku, _initial(sku)),
            )
        rows = ctx.db.execute(
            "SELECT sku, available FROM shop_stock WHERE sku = ANY(%s) ORDER BY sku FOR UPDATE",
            (skus,),
        ).fetchall()
        have = dict(rows)
        missing = [sku for sku, quantity in wanted.items() if have[sku] < quantity]
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
            ctx.db.execute(
                "UPDATE shop_stock SET available = available - %s WHERE sku = %s", (quantity, sku)
            )
        existing = (uuid.uuid4(), dict(wanted))
        ctx.db.execute(
            "INSERT INTO shop_reservations VALUES (%s, %s, %s)",
            (event.order_id, existing[0], Jsonb(existing[1])),
        )
    reservation_id, lines = existing
    ctx.emit(
        StockReserved(
            order_id=event.order_id,
            reservation_id=reservation_id,
            items=[
                ReservedLine(sku=sku, quantity=quantity, warehouse=WAREHOUSE)
                for sku, quantity in lines.items()
            ],
            reserved_at=now,
            expires_at=now + RESERVATION_TTL,
        )
    )


@svc.on(ShipmentCreated)
def pick_stock(event: ShipmentCreated, ctx: choreo.Context) -> None:
    """Picking is where damaged units show up; the saga then undoes the order."""
    reservation = _reservation(ctx.db, event.order_id)
    if reservation is None:
        raise LookupError(f"no reservation for order {event.order_id}; cannot pick it")
    reservation_id, lines = reservation
    now = datetime.now(UTC)
    damaged = next((sku for sku in lines if sku.startswith(DAMAGED_SKU_PREFIX)), None)
    if damaged is not None:
        ctx.emit(
            StockCommitFailed(
                order_id=event.order_id, sku=damaged, reason="units damaged", failed_at=now
            )
        )
        return
    ctx.emit(
        StockCommitted(order_id=event.order_id, reservation_id=reservation_id, committed_at=now)
    )


@svc.on(ReleaseStock)
def release_stock(event: ReleaseStock, ctx: choreo.Context) -> None:
    """Puts the units back (picked ones too) and confirms; releasing twice is harmless."""
    released = ctx.db.execute(
        "DELETE FROM shop_reservations WHERE order_id = %s RETURNING lines", (event.order_id,)
    ).fetchone()
    for sku, quantity in sorted((released[0] if released else {}).items()):
        ctx.db.execute(
            "UPDATE shop_stock SET available = available + %s WHERE sku = %s", (quantity, sku)
        )
    ctx.emit(
        StockReleased(
            order_id=event.order_id,
            reservation_id=event.reservation_id,
            released_at=datetime.now(UTC),
        )
    )
