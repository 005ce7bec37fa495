"""The orders service: turns a received order into a placed (or rejected) one.

Run it with ``choreo run services.orders``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import choreo
from services.events import CancellationReason, OrderCancelled, OrderPlaced, OrderReceived

svc = choreo.Service("orders")

SUPPORTED_CURRENCIES = frozenset({"EUR", "USD", "GBP"})


@svc.on(OrderReceived)
def validate_order(event: OrderReceived, ctx: choreo.Context) -> None:
    """Reject what no later step could fix (empty order, unknown currency); place the rest."""
    now = datetime.now(UTC)
    problem = _problem(event)
    if problem:
        ctx.emit(
            OrderCancelled(
                order_id=event.order_id,
                reason=CancellationReason.OTHER,
                detail=problem,
                cancelled_at=now,
            )
        )
        return
    total = sum((line.unit_price * line.quantity for line in event.items), Decimal("0.00"))
    ctx.emit(
        OrderPlaced(
            order_id=event.order_id,
            customer_id=event.customer_id,
            items=event.items,
            total=total,
            currency=event.currency,
            shipping_address=event.shipping_address,
            placed_at=now,
        )
    )


def _problem(event: OrderReceived) -> str | None:
    if not event.items:
        return "order has no items"
    if any(line.quantity <= 0 for line in event.items):
        return "every line needs a positive quantity"
    if event.currency not in SUPPORTED_CURRENCIES:
        return f"currency {event.currency} is not supported"
    return None
