"""The payments service: authorizes at order time, captures when the order ships, undoes both.

Run it with ``choreo run services.payments``. Authorizations live in process memory to keep the
example short; a real service keeps them in its own database.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

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

svc = choreo.Service("payments")


@dataclass(frozen=True)
class Authorization:
    payment_id: uuid.UUID
    amount: Decimal
    currency: str


authorizations: dict[str, Authorization] = {}


@svc.on(OrderPlaced)
def authorize(event: OrderPlaced, ctx: choreo.Context) -> None:
    """Hold the amount now so the order cannot fail for money once it ships."""
    now = datetime.now(UTC)
    held = authorizations.get(event.order_id)  # a redelivered order keeps its first hold
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
        held = authorizations[event.order_id] = Authorization(
            uuid.uuid4(), event.total, event.currency
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
    held = authorizations.get(event.order_id)
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
    authorizations.pop(event.order_id, None)
    ctx.emit(
        AuthorizationVoided(
            order_id=event.order_id, payment_id=event.payment_id, voided_at=datetime.now(UTC)
        )
    )


@svc.on(RefundPayment)
def refund(event: RefundPayment, ctx: choreo.Context) -> None:
    authorizations.pop(event.order_id, None)
    ctx.emit(
        PaymentRefunded(
            order_id=event.order_id,
            payment_id=event.payment_id,
            amount=event.amount,
            currency=event.currency,
            refunded_at=datetime.now(UTC),
        )
    )
