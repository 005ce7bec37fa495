"""A service whose side effect (a row per event) shares the idempotency store's transaction."""

from __future__ import annotations

import os

import choreo
from choreo._runtime.idempotency import SqliteIdempotency
from services.events import OrderPlaced

store = SqliteIdempotency(os.environ["ONCE_DB"])
store._connection.execute("CREATE TABLE IF NOT EXISTS effects (order_id TEXT, at REAL)")
svc = choreo.Service("once", idempotency=store)


@svc.on(OrderPlaced)
def apply(event: OrderPlaced, ctx: choreo.Context) -> None:
    ctx.db.execute("INSERT INTO effects VALUES (?, julianday('now'))", (event.order_id,))
