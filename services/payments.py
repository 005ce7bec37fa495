"""The payments service: authorizes at order time, captures when the order ships, undoes both.

Run it with ``choreo run services.payments``. Authorizations are a table in PostgreSQL written
through ``ctx.db`` (``PostgresIdempotency``), so a restart between authorizing and capturing
forgets nothing and a redelivered order is never held twice.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import choreo
from services import providers
from services.events import (
    AuthorizationVoided,
    OrderPlaced,
    PaymentAuthorized,
    PaymentCaptured,
    PaymentDeclined,
    PaymentMethod,
    PaymentRefunded,
    RefundPayment,
    ShipmentCreated,
    VoidAuthorization,
)
from services.settings import DSN

AUTHORIZATIONS = """CREATE TABLE IF NOT EXISTS shop_authorizations (
    order_id TEXT PRIMARY KEY, payment_id UUID NOT NULL, amount NUMERIC(10, 2) NOT NULL,
    currency TEXT NOT NULL)"""
"""Holds not voided or refunded yet (captured ones stay until refunded)."""

TABLES = (AUTHORIZATIONS,)

svc = choreo.Service("payments", idempotency=choreo.PostgresIdempotency(DSN, setup=TABLES))


@dataclass(frozen=True)
class Authorization:
    payment_id: uuid.UUID
    amount: Decimal
    currency: str


def _held(db: Any, order_id: str) -> Authorization | None:
    row = db.execute(
        "SELECT payment_id, amount, currency FROM shop_authorizations WHERE order_id = %s",
        (order_id,),
    ).fetchone()
    return None if row is None else Authorization(*row)


def _release(db: Any, order_id: str) -> None:
    db.execute("DELETE FROM shop_authorizations WHERE order_id = %s", (order_id,))


@svc.on(OrderPlaced)
def authorize(event: OrderPlaced, ctx: choreo.Context) -> None:
    """Hold the amount now so the order cannot fail for money once it ships."""
    now = datetime.now(UTC)
    held = _held(ctx.db, event.order_id)  # a redelivered order keeps its first hold
    if held is None:
        decline = providers.authorize(event.customer_id, event.total)
        if decline is not None:
            ctx.emit(
                PaymentDeclined(
                    order_id=event.order_id,
                    amount=event.total,
                    currency=event.currency,
                    decline_code=decline,
                    declined_at=now,
                )
            )
            return
        held = Authorization(uuid.uuid4(), event.total, event.currency)
        ctx.db.execute(
            "INSERT INTO shop_authorizations VALUES (%s, %s, %s, %s)",
            (event.order_id, held.payment_id, held.amount, held.currency),
        )
    ctx.emit(
        PaymentAuthorized(
            order_id=event.order_id,
            payment_id=held.payment_id,
            amount=held.amount,
            currency=held.currency,
            method=PaymentMethod.CARD,
            authorized_at=now,
        )
    )


@svc.on(ShipmentCreated)
def capture(event: ShipmentCreated, ctx: choreo.Context) -> None:
    held = _held(ctx.db, event.order_id)
    if held is None:
        raise LookupError(f"no authorization for order {event.order_id}; cannot capture it")
    ctx.emit(
        PaymentCaptured(
            order_id=event.order_id,
            payment_id=held.payment_id,
            amount=held.amount,
            currency=held.currency,
            captured_at=datetime.now(UTC),
        )
    )


@svc.on(VoidAuthorization)
def void(event: VoidAuthorization, ctx: choreo.Context) -> None:
    """Release the hold; voiding an unknown or already voided one only confirms."""
    _release(ctx.db, event.order_id)
    ctx.emit(
        AuthorizationVoided(
            order_id=event.order_id, payment_id=event.payment_id, voided_at=datetime.now(UTC)
        )
    )


@svc.on(RefundPayment)
def refund(event: RefundPayment, ctx: choreo.Context) -> None:
    _release(ctx.db, event.order_id)
    ctx.emit(
        PaymentRefunded(
            order_id=event.order_id,
            payment_id=event.payment_id,
            amount=event.amount,
            currency=event.currency,
            refunded_at=datetime.now(UTC),
        )
    )
