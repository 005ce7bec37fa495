"""A service whose every handling is a ledger line: when, which partition and offset, which
record. One ledger file per process, so the test can tell the instances apart."""

from __future__ import annotations

import os
import time
from pathlib import Path

import choreo
from services.events import OrderPlaced, StockReservationFailed

svc = choreo.Service("scale")
_LEDGER = (Path(os.environ["LEDGER_DIR"]) / f"{os.getpid()}.txt").open("a", buffering=1)
_EMIT = os.environ.get("SCALE_EMIT") == "true"


@svc.on(OrderPlaced)
def record(event: OrderPlaced, ctx: choreo.Context) -> None:
    """``<unix time> <partition> <offset> <order id>``, flushed line by line (kill -9 safe);
    with ``SCALE_EMIT``, one event out per record too (sends a fence can catch in flight)."""
    if _EMIT:
        failed = StockReservationFailed(
            order_id=event.order_id, unavailable_skus=[], reason="scale", failed_at=event.placed_at
        )
        ctx.emit(failed)
    record = ctx.record
    assert record is not None
    _LEDGER.write(f"{time.time():.4f} {record.partition} {record.offset} {event.order_id}\n")
