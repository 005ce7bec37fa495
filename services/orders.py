"""The orders service: validates received orders and cancels them when the saga says so.

Run it with ``choreo run services.orders``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import choreo
from services.events import (
    CancellationReason,
    CancelOrder,
    OrderCancelled,
    OrderInvalid,
    OrderPlaced,
    OrderReceived,
)
from services.settings import DSN

# A compensation the saga tracker re-sends carries its first ce_id: the store recognises it
# and re-sends the first OrderCancelled instead of cancelling twice.
svc = choreo.Service("orders", idempotency=choreo.PostgresIdempotency(DSN))

SUPPORTED_CURRENCIES = frozenset({"EUR", "USD", "GBP"})

_REASONS = (
    ("StockReservationFailed", CancellationReason.OUT_OF_STOCK),
    ("PaymentDeclined", CancellationReason.PAYMENT_DECLINED),
    ("FraudSuspected", CancellationReason.FRAUD_SUSPECTED),
    ("OrderRejected", CancellationReason.REJECTED),
    ("ShipmentFailed", CancellationReason.UNDELIVERABLE),
    ("StockCommitFailed", CancellationReason.DAMAGED_STOCK),
    ("cancelled by", CancellationReason.CUSTOMER_REQUEST),
)
"""The saga's reason names the event that failed the order (or who cancelled it); the customer
sees a category."""


@svc.on(OrderReceived)
def validate_order(event: OrderReceived, ctx: choreo.Context) -> None:
    """Turn away what no later step could fix (empty order, unknown currency); place the rest."""
    now = datetime.now(UTC)
    problem = _problem(event)
    if problem:
        ctx.emit(OrderInvalid(order_id=event.order_id, problem=problem, rejected_at=now))
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


@svc.on(CancelOrder)
def cancel_order(event: CancelOrder, ctx: choreo.Context) -> None:
    """The saga's last compensation: the order is off, with a reason the customer understands."""
    reason = next((r for name, r in _REASONS if name in event.reason), CancellationReason.OTHER)
    ctx.emit(
        OrderCancelled(
            order_id=event.order_id,
            reason=reason,
            detail=event.reason,
            cancelled_at=datetime.now(UTC),
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
