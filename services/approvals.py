"""The approvals service: the join after the checks, and the queue of orders waiting for a person.

Run it with ``choreo run services.approvals``; managers work the queue with
``python -m services.approval_desk`` or ``POST /approvals`` on ``choreo ingress``, both of which
publish an ``ApprovalDecision``.

An order moves on only when stock, payment and fraud checks all passed. Normal orders are then
approved automatically; from ``HIGH_VALUE`` up, ``ApprovalRequested`` puts the order in front
of a manager, and the saga cancels it if nobody decides within ``SHOP_APPROVAL_TIMEOUT_S``.
This service is the only one that says ``OrderApproved``/``OrderRejected``, and only for an
order still waiting: a decision that comes too late, twice, or for an order that was cancelled
or never needed one is dropped (with a log line), so it can never revive an order.

The join state is a table in PostgreSQL written through ``ctx.db``: in the same transaction
that records the event as handled (``PostgresIdempotency``), so a redelivered check or a crash
between the write and the emit never decides an order twice or forgets it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import psycopg

import choreo
from services.events import (
    ApprovalDecision,
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
"""status: collecting → auto-approved | pending | cancelled; pending → approved | rejected |
cancelled."""
EXPIRY = "ALTER TABLE shop_approvals ADD COLUMN IF NOT EXISTS expires_at TIMESTAMPTZ"
"""When a pending request stops accepting decisions (the saga's approval deadline)."""

TABLES = (TABLE, EXPIRY)

svc = choreo.Service("approvals", idempotency=choreo.PostgresIdempotency(DSN, setup=TABLES))
log = logging.getLogger(__name__)


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


@svc.on(ApprovalDecision)
def decided(event: ApprovalDecision, ctx: choreo.Context) -> None:
    """A person's answer counts only while the order waits for it."""
    status = "approved" if event.approved else "rejected"
    waiting = ctx.db.execute(
        "UPDATE shop_approvals SET status = %s, decided_by = %s, decided_at = %s "
        "WHERE order_id = %s AND status = 'pending' AND expires_at > %s RETURNING order_id",
        (status, event.approver, event.decided_at, event.order_id, datetime.now(UTC)),
    ).fetchone()
    if waiting is None:
        log.warning(
            "dropped %s's decision on order %s: it is not waiting for approval (decided, "
            "expired, cancelled, or never needed one)",
            event.approver,
            event.order_id,
        )
        return
    if event.approved:
        ctx.emit(
            OrderApproved(
                order_id=event.order_id, approver=event.approver, approved_at=event.decided_at
            )
        )
    else:
        ctx.emit(
            OrderRejected(
                order_id=event.order_id,
                approver=event.approver,
                comment=event.comment or "",
                rejected_at=event.decided_at,
            )
        )


@svc.on(OrderCancelled)
def cancelled(event: OrderCancelled, ctx: choreo.Context) -> None:
    """The saga gave up: the request leaves the queue, and checks still on their way are moot."""
    ctx.db.execute(
        "UPDATE shop_approvals SET status = 'cancelled', decided_at = %s "
        "WHERE order_id = %s AND status IN ('collecting', 'pending')",
        (datetime.now(UTC), event.order_id),
    )


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
        "UPDATE shop_approvals SET status = 'pending', requested_at = %s, expires_at = %s "
        "WHERE order_id = %s",
        (now, now + APPROVAL_TIMEOUT, order_id),
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


@dataclass(frozen=True)
class Pending:
    order_id: str
    customer_id: str
    total: Decimal
    currency: str
    requested_at: datetime


def pending(dsn: str = DSN) -> list[Pending]:
    """The orders waiting for a person, oldest first.

    The table is the service's: it appears when the service handles its first event. A desk
    opened before that (a fresh database) sees an empty queue rather than an error, and does
    not create the table itself, so two processes never race on the same DDL.
    """
    with psycopg.connect(dsn) as connection:
        try:
            rows = connection.execute(
                "SELECT order_id, customer_id, total, currency, requested_at FROM shop_approvals "
                "WHERE status = 'pending' ORDER BY requested_at"
            ).fetchall()
        except psycopg.errors.UndefinedTable:
            return []
    return [Pending(*row) for row in rows]


def decision(order_id: str, approver: str, comment: str | None) -> ApprovalDecision:
    """What a person's answer publishes: a rejection needs a comment for the customer."""
    return ApprovalDecision(
        order_id=order_id,
        approver=approver,
        approved=comment is None,
        comment=comment,
        decided_at=datetime.now(UTC),
    )
