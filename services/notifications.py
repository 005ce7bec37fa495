"""The notifications service: confirms shipped orders and sends the survey a week later.

Run it with ``choreo run services.notifications``. The week is a durable timer: ``SurveyDue``
is written to the scheduled topic ``shop.followups`` right away with a delivery time, so a
restart in between loses nothing; the consumer holds it until then. The delay comes from
``SHOP_FOLLOW_UP_DELAY_S`` (the demo shortens it).
"""

from __future__ import annotations

from datetime import UTC, datetime

import choreo
from services.events import (
    ConfirmationSent,
    OrderCancelled,
    OrderPlaced,
    ShipmentCreated,
    SurveyDue,
    SurveySent,
)
from services.settings import DSN, FOLLOW_UP_DELAY

TABLES = (
    "CREATE TABLE IF NOT EXISTS shop_recipients (order_id TEXT PRIMARY KEY, customer_id TEXT)",
    "CREATE TABLE IF NOT EXISTS shop_cancelled_orders (order_id TEXT PRIMARY KEY)",
)

svc = choreo.Service("notifications", idempotency=choreo.PostgresIdempotency(DSN, setup=TABLES))


@svc.on(OrderPlaced)
def remember_customer(event: OrderPlaced, ctx: choreo.Context) -> None:
    ctx.db.execute(
        "INSERT INTO shop_recipients VALUES (%s, %s) ON CONFLICT DO NOTHING",
        (event.order_id, event.customer_id),
    )


@svc.on(ShipmentCreated)
def confirm(event: ShipmentCreated, ctx: choreo.Context) -> None:
    row = ctx.db.execute(
        "SELECT customer_id FROM shop_recipients WHERE order_id = %s", (event.order_id,)
    ).fetchone()
    if row is None:  # the OrderPlaced copy is late: a retry finds it
        raise LookupError(f"no customer yet for order {event.order_id}")
    customer = row[0]
    now = datetime.now(UTC)
    ctx.emit(
        ConfirmationSent(
            order_id=event.order_id, customer_id=customer, channel="email", sent_at=now
        )
    )
    due = now + FOLLOW_UP_DELAY
    ctx.emit(SurveyDue(order_id=event.order_id, customer_id=customer, due_at=due), at=due)


@svc.on(OrderCancelled)
def forget_cancelled(event: OrderCancelled, ctx: choreo.Context) -> None:
    """A cancelled order gets no survey, even if one was already scheduled (a week ago)."""
    ctx.db.execute(
        "INSERT INTO shop_cancelled_orders VALUES (%s) ON CONFLICT DO NOTHING", (event.order_id,)
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
