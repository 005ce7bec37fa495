"""The notifications service: tells customers their order shipped, or why it will not, and sends
the survey a week later.

Run it with ``choreo run services.notifications``. The week is a durable timer: ``SurveyDue``
is written to the scheduled topic ``shop.followups`` right away with a delivery time, so a
restart in between loses nothing; the consumer holds it until then. The delay comes from
``SHOP_FOLLOW_UP_DELAY_S`` (the demo shortens it).

A cancelled order's customer gets ``CancellationSent`` with a message for its reason; when a
manager rejected the order, the message quotes the manager's comment. That comment arrives on
``shop.approvals``, the cancellation on ``shop.orders``: two topics are not ordered against each
other, so a cancellation for a rejection not seen yet is retried until it is. An order that was
never placed (``OrderInvalid``) gets a notice too, naming what is wrong with it.
"""

from __future__ import annotations

from datetime import UTC, datetime

import choreo
from services.events import (
    CancellationReason,
    CancellationSent,
    ConfirmationSent,
    OrderCancelled,
    OrderInvalid,
    OrderReceived,
    OrderRejected,
    ShipmentCreated,
    SurveyDue,
    SurveySent,
)
from services.settings import DSN, FOLLOW_UP_DELAY

TABLES = (
    "CREATE TABLE IF NOT EXISTS shop_recipients (order_id TEXT PRIMARY KEY, customer_id TEXT)",
    "CREATE TABLE IF NOT EXISTS shop_cancelled_orders (order_id TEXT PRIMARY KEY)",
    "CREATE TABLE IF NOT EXISTS shop_rejections (order_id TEXT PRIMARY KEY, comment TEXT)",
)

MESSAGES = {
    CancellationReason.CUSTOMER_REQUEST: "Your order was cancelled as you asked.",
    CancellationReason.OUT_OF_STOCK: (
        "Sorry, an item in your order is out of stock, so we cancelled it. You were not charged."
    ),
    CancellationReason.PAYMENT_DECLINED: (
        "Your payment was declined, so we cancelled the order. Please try another card."
    ),
    CancellationReason.FRAUD_SUSPECTED: (
        "We could not verify this order, so we cancelled it. Nothing was charged."
    ),
    CancellationReason.UNDELIVERABLE: (
        "We could not arrange delivery to your address, so we cancelled the order. "
        "Any payment was refunded."
    ),
    CancellationReason.DAMAGED_STOCK: (
        "An item in your order was damaged in our warehouse, so we cancelled the order. "
        "Any payment was refunded."
    ),
    CancellationReason.OTHER: (
        "We could not complete your order, so we cancelled it. Any payment was refunded."
    ),
}
"""What the customer reads for each reason; a rejection quotes the manager instead."""
INVALID = "INVALID"
"""The notice's reason for an order that was never placed."""

LATE_REJECTION_RETRY = choreo.RetryPolicy(delays_s=(2.0, 10.0, 60.0))
"""A cancellation waits for its rejection on retry topics, not in place: its partition (every
other order's cancellations) keeps flowing meanwhile."""

svc = choreo.Service("notifications", idempotency=choreo.PostgresIdempotency(DSN, setup=TABLES))


@svc.on(OrderReceived)
def remember_customer(event: OrderReceived, ctx: choreo.Context) -> None:
    """Every order as it came in, valid or not: each one's customer may have to be told."""
    ctx.db.execute(
        "INSERT INTO shop_recipients VALUES (%s, %s) ON CONFLICT DO NOTHING",
        (event.order_id, event.customer_id),
    )


@svc.on(ShipmentCreated)
def confirm(event: ShipmentCreated, ctx: choreo.Context) -> None:
    customer = _customer(ctx, event.order_id)
    now = datetime.now(UTC)
    ctx.emit(
        ConfirmationSent(
            order_id=event.order_id, customer_id=customer, channel="email", sent_at=now
        )
    )
    due = now + FOLLOW_UP_DELAY
    ctx.emit(SurveyDue(order_id=event.order_id, customer_id=customer, due_at=due), at=due)


def _recalled(ctx: choreo.Context, query: str, order_id: str, missing: str) -> str:
    """What another event stored for the order; if its copy is late, a retry finds it."""
    row = ctx.db.execute(query, (order_id,)).fetchone()
    if row is None:
        raise LookupError(f"{missing} for order {order_id}")
    return str(row[0])


def _customer(ctx: choreo.Context, order_id: str) -> str:
    query = "SELECT customer_id FROM shop_recipients WHERE order_id = %s"
    return _recalled(ctx, query, order_id, "no customer yet")


@svc.on(OrderRejected)
def remember_rejection(event: OrderRejected, ctx: choreo.Context) -> None:
    ctx.db.execute(
        "INSERT INTO shop_rejections VALUES (%s, %s) ON CONFLICT DO NOTHING",
        (event.order_id, event.comment),
    )


@svc.on(OrderCancelled, retry=LATE_REJECTION_RETRY)
def tell_cancelled(event: OrderCancelled, ctx: choreo.Context) -> None:
    """Tell the customer why; a cancelled order gets no survey, even one already scheduled."""
    if event.reason is CancellationReason.REJECTED:
        query = "SELECT comment FROM shop_rejections WHERE order_id = %s"
        comment = _recalled(ctx, query, event.order_id, "no rejection seen yet")
        message = f"Your order was not approved: {comment}"
    else:
        message = MESSAGES[event.reason]
    _tell_once(ctx, event.order_id, event.reason.value, message)


@svc.on(OrderInvalid)
def tell_invalid(event: OrderInvalid, ctx: choreo.Context) -> None:
    _tell_once(ctx, event.order_id, INVALID, f"We could not take your order: {event.problem}.")


def _tell_once(ctx: choreo.Context, order_id: str, reason: str, message: str) -> None:
    """One notice per order: the tracker may cancel an order twice (a compensation it retried)."""
    first = ctx.db.execute(
        "INSERT INTO shop_cancelled_orders VALUES (%s) ON CONFLICT DO NOTHING RETURNING order_id",
        (order_id,),
    ).fetchone()
    if first is None:
        return
    ctx.emit(
        CancellationSent(
            order_id=order_id,
            customer_id=_customer(ctx, order_id),
            reason=reason,
            message=message,
            channel="email",
            sent_at=datetime.now(UTC),
        )
    )


@svc.on(SurveyDue)
def send_survey(event: SurveyDue, ctx: choreo.Context) -> None:
    cancelled = ctx.db.execute(
        "SELECT 1 FROM shop_cancelled_orders WHERE order_id = %s", (event.order_id,)
    ).fetchone()
    if cancelled:
        return
    ctx.emit(
        SurveySent(
            order_id=event.order_id, customer_id=event.customer_id, sent_at=datetime.now(UTC)
        )
    )
