"""Relays each order at least once; its effect (a row with the time) shares the idempotency
store's transaction, so a redelivered event leaves no second row."""

from __future__ import annotations

import os
import time

import choreo
from choreo._runtime.idempotency import SqliteIdempotency
from services.events import OrderPlaced, StockReservationFailed

store = SqliteIdempotency(os.environ["RELAY_DB"])
store._connection.execute("CREATE TABLE IF NOT EXISTS effects (order_id TEXT, at REAL)")
svc = choreo.Service("relay-once", idempotency=store)


@svc.on(OrderPlaced)
def relay(event: OrderPlaced, ctx: choreo.Context) -> None:
    ctx.db.execute("INSERT INTO effects VALUES (?, ?)", (event.order_id, time.time()))
    ctx.emit(
        StockReservationFailed(
            order_id=event.order_id, unavailable_skus=[], reason="once", failed_at=event.placed_at
        )
    )
