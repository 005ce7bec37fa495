"""A service that writes each handled event to a ledger file: the side effect tests count."""

from __future__ import annotations

import os
import time

import choreo
from services.events import OrderPlaced

svc = choreo.Service("ledger")
LEDGER = os.environ.get("LEDGER_FILE", "ledger.txt")
DELAY_S = float(os.environ.get("LEDGER_DELAY_S", "0"))


@svc.on(OrderPlaced)
def record(event: OrderPlaced, ctx: choreo.Context) -> None:
    """One line per handling: order id, partition, offset."""
    time.sleep(DELAY_S)
    assert ctx.record is not None
    with open(LEDGER, "a") as ledger:
        ledger.write(f"{event.order_id} {ctx.record.partition} {ctx.record.offset}\n")
