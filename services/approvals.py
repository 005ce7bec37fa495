"""The approvals service: the join after the checks, and the queue of orders waiting for a person.

Run it with ``choreo run services.approvals``; managers work the queue with
``python -m services.approval_desk`` (or POST the same events through ``choreo ingress``).

An order moves on only when stock, payment and fraud checks all passed. Normal orders are then
approved automatically; from ``HIGH_VALUE`` up, ``ApprovalRequested`` puts the order in front
of a manager, and the saga cancels it if nobody decides within ``SHOP_APPROVAL_TIMEOUT_S``.

The join state is a table in PostgreSQL written through ``ctx.db``: in the same transaction
that records the event as handled (``PostgresIdempotency``), so a redelivered check or a crash
between the write and the emit never decides an order twice or forgets it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import choreo
from services.events import (
    ApprovalRequested,
    FraudCleared,
    OrderApproved,
    OrderCancelled,
    OrderPlaced,
    OrderRejected,
    PaymentAuthorized,
    StockReserved,
)
from services.providers import HIGH_VALUE
from services.settings import APPROVAL_TIMEOUT, DSN

AUTO_APPROVER = "auto"

TABLE = """CREATE TABLE IF NOT EXISTS shop_approvals (
    order_id TEXT PRIMARY KEY,
    customer_id TEXT, total NUMERIC(10, 2), currency TEXT,
    placed BOOLEAN NOT NULL DEFAULT false, stock BOOLEAN NOT NULL DEFAULT false,
    payment BOOLEAN NOT NULL DEFAULT false, fraud BOOLEAN NOT NULL DEFAULT false,
    status TEXT NOT NULL DEFAULT 'collecting',
    requested_at TIMESTAMPTZ, decided_by TEXT, decided_at TIMESTAMPTZ)"""
"""status: collecting → auto-approved, or pending → approved | rejected | cancelled."""

svc = choreo.Service("approvals", idempotency=choreo.PostgresIdempotency(DSN, setup=[TABLE]))


@svc.on(OrderPlaced)
def placed(event: OrderPlaced, ctx: choreo.Context) -> None:
    _check(
        ctx,
        event.order_id,
        "placed = true, customer_id = %(customer)s, total = %(total)s, currency = %(currency)s",
        customer=event.customer_id,
        total=event.total,
        currency=event.currency,
    )


@svc.on(StockReserved)
def stock_reserved(event: StockReserved, ctx: choreo.Context) -> None:
    _check(ctx, event.order_id, "stock = true")


@svc.on(PaymentAuthorized)
def payment_authorized(event: PaymentAuthorized, ctx: choreo.Context) -> None:
    _check(ctx, event.order_id, "payment = true")


@svc.on(FraudCleared)
def fraud_cleared(event: FraudCleared, ctx: choreo.Context) -> None:
    _check(ctx, event.order_id, "fraud = true")


@svc.on(OrderApproved)
def approved(event: OrderApproved, ctx: choreo.Context) -> None:
    _close(ctx, event.order_id, "approved", event.approver)


@svc.on(OrderRejected)
def rejected(event: OrderRejected, ctx: choreo.Context) -> None:
    _close(ctx, event.order_id, "rejected", event.approver)


@svc.on(OrderCancelled)
def cancelled(event: OrderCancelled, ctx: choreo.Context) -> None:
    """The saga gave up (e.g. nobody decided in time): the request leaves the queue."""
    _close(ctx, event.order_id, "cancelled", None)


def _check(ctx: choreo.Context, order_id: str, assignments: str, **values: Any) -> None:
    """Record one passed check; the handler that completes the set decides, exactly once."""
    now = datetime.now(UTC)
    ctx.db.execute(
        "INSERT INTO shop_approvals (order_id) VALUES (%s) ON CONFLICT DO NOTHING", (order_id,)
    )
    row = ctx.db.execute(
        f"UPDATE shop_approvals SET {assignments} WHERE order_id = %(order_id)s "
        "RETURNING customer_id, total, currency, placed AND stock AND payment AND fraud, status",
        {"order_id": order_id, **values},
    ).fetchone()
    customer, total, currency, complete, status = row
    if not complete or status != "collecting":
        return
    if total < HIGH_VALUE:
        ctx.db.execute(
            "UPDATE shop_approvals SET status = 'auto-approved', decided_by = %s, "
            "decided_at = %s WHERE order_id = %s",
            (AUTO_APPROVER, now, order_id),
        )
        ctx.emit(OrderApproved(order_id=order_id, approver=AUTO_APPROVER, approved_at=now))
        return
    ctx.db.execute(
        "UPDATE shop_approvals SET status = 'pending', requested_at = %s WHERE order_id = %s",
        (now, order_id),
    )
    ctx.emit(
        ApprovalRequested(
            order_id=order_id,
            customer_id=customer,
            total=total,
            currency=currency,
            requested_at=now,
            expires_at=now + APPROVAL_TIMEOUT,
        )
    )


def _close(ctx: choreo.Context, order_id: str, status: str, by: str | None) -> None:
    ctx.db.execute(
        "UPDATE shop_approvals SET status = %s, decided_by = %s, decided_at = %s "
        "WHERE order_id = %s AND status = 'pending'",
        (status, by, datetime.now(UTC), order_id),
    )


@dataclass(frozen=True)
class Pending:
    order_id: str
    customer_id: str
    total: Decimal
    currency: str
    requested_at: datetime


def pending(dsn: str = DSN) -> list[Pending]:
    """The orders waiting for a person, oldest first."""
    import psycopg

    with psycopg.connect(dsn) as connection:
        rows = connection.execute(
            "SELECT order_id, customer_id, total, currency, requested_at FROM shop_approvals "
            "WHERE status = 'pending' ORDER BY requested_at"
        ).fetchall()
    return [Pending(*row) for row in rows]


def decision(order_id: str, approver: str, comment: str | None) -> OrderApproved | OrderRejected:
    """What a person's answer publishes: a rejection needs a comment for the customer."""
    now = datetime.now(UTC)
    if comment is None:
        return OrderApproved(order_id=order_id, approver=approver, approved_at=now)
    return OrderRejected(order_id=order_id, approver=approver, comment=comment, rejected_at=now)
