"""A service that notes each order it handles and answers with a payment: what the registry
tests run with ``choreo run`` (the payments topic is written in the registry wire format)."""

from __future__ import annotations

import os
import uuid
from datetime import UTC, datetime

import choreo
from services.events import OrderPlaced, PaymentAuthorized, PaymentMethod

svc = choreo.Service("registry-ledger")
LEDGER = os.environ.get("LEDGER_FILE", "ledger.txt")


@svc.on(OrderPlaced)
def record(event: OrderPlaced, ctx: choreo.Context) -> None:
    """One ledger line per handling (order id, customer, total), then a payment."""
    with open(LEDGER, "a") as ledger:
        ledger.write(f"{event.order_id} {event.customer_id} {event.total}\n")
    ctx.emit(
        PaymentAuthorized(
            order_id=event.order_id,
            payment_id=uuid.uuid5(uuid.NAMESPACE_URL, event.order_id),
            amount=event.total,
            currency=event.currency,
            method=PaymentMethod.CARD,
            authorized_at=datetime(2026, 12, 3, tzinfo=UTC),
        )
    )
