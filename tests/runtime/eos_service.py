"""Emits one event per input in exactly-once mode; a ledger line per handling times the kill."""

from __future__ import annotations

import os

import choreo
from services.events import OrderPlaced, StockReservationFailed

svc = choreo.Service("eos")
LEDGER = os.environ["LEDGER_FILE"]


@svc.on(OrderPlaced)
def reserve(event: OrderPlaced, ctx: choreo.Context) -> None:
    ctx.emit(
        StockReservationFailed(
            order_id=event.order_id, unavailable_skus=[], reason="eos", failed_at=event.placed_at
        )
    )
    with open(LEDGER, "a") as ledger:
        ledger.write(f"{event.order_id}\n")
