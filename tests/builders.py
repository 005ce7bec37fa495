"""Realistic events for tests (importable as ``builders``: tests/ is on sys.path).

The order pipeline's events for one order id: what each service would publish about it. Ids
that later events refer to (reservation, payment, shipment) are derived from the order id, so
independent builders agree with each other the way the services' events do.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from services.events import (
    Address,
    CancellationReason,
    CancelOrder,
    CancelShipment,
    ConfirmationSent,
    FraudCleared,
    FraudSuspected,
    LineItem,
    OrderApproved,
    OrderCancelled,
    OrderInvalid,
    OrderPlaced,
    OrderReceived,
    OrderRejected,
    PaymentAuthorized,
    PaymentCaptured,
    PaymentDeclined,
    PaymentMethod,
    RefundPayment,
    ReleaseStock,
    ReservedLine,
    ShipmentCreated,
    ShipmentFailed,
    StockCommitFailed,
    StockCommitted,
    StockReservationFailed,
    StockReserved,
    SurveyDue,
    SurveySent,
    VoidAuthorization,
)

NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)


def new_order_id(tag: str = "o") -> str:
    """An order id no other test (or earlier run against the same database) has used."""
    return f"{tag}-{uuid.uuid4().hex[:12]}"


def _id(kind: str, order_id: str) -> uuid.UUID:
    return uuid.uuid5(uuid.NAMESPACE_URL, f"{kind}/{order_id}")


def reservation_id(order_id: str) -> uuid.UUID:
    return _id("reservation", order_id)


def payment_id(order_id: str) -> uuid.UUID:
    return _id("payment", order_id)


def shipment_id(order_id: str) -> uuid.UUID:
    return _id("shipment", order_id)


def received(
    order_id: str = "o-1",
    currency: str = "EUR",
    sku: str = "SKU-1",
    *,
    customer_id: str = "c-1",
    postal_code: str = "9000",
    quantity: int = 2,
    unit_price: str = "9.99",
) -> OrderReceived:
    return OrderReceived(
        order_id=order_id,
        customer_id=customer_id,
        items=[LineItem(sku=sku, quantity=quantity, unit_price=Decimal(unit_price))],
        currency=currency,
        shipping_address=Address(
            line1="1 Main St", city="Ghent", postal_code=postal_code, country="BE"
        ),
        received_at=NOW,
    )


def placed(
    order_id: str = "o-1",
    sku: str = "SKU-1",
    *,
    customer_id: str = "c-1",
    postal_code: str = "9000",
    quantity: int = 2,
    unit_price: str = "9.99",
) -> OrderPlaced:
    """What the orders service places for ``received(...)`` with the same arguments."""
    order = received(
        order_id,
        sku=sku,
        customer_id=customer_id,
        postal_code=postal_code,
        quantity=quantity,
        unit_price=unit_price,
    )
    return OrderPlaced(
        order_id=order.order_id,
        customer_id=order.customer_id,
        items=order.items,
        total=sum((line.unit_price * line.quantity for line in order.items), Decimal("0.00")),
        currency=order.currency,
        shipping_address=order.shipping_address,
        placed_at=order.received_at,
    )


def invalid(order_id: str) -> OrderInvalid:
    return OrderInvalid(order_id=order_id, problem="order has no items", rejected_at=NOW)


def reserved(order_id: str, sku: str = "SKU-1") -> StockReserved:
    return StockReserved(
        order_id=order_id,
        reservation_id=reservation_id(order_id),
        items=[ReservedLine(sku=sku, quantity=2, warehouse="main")],
        reserved_at=NOW,
        expires_at=NOW + timedelta(minutes=15),
    )


def reservation_failed(order_id: str) -> StockReservationFailed:
    return StockReservationFailed(
        order_id=order_id,
        unavailable_skus=["OOS-1"],
        reason="insufficient stock",
        failed_at=NOW,
    )


def authorized(order_id: str, amount: str = "19.98") -> PaymentAuthorized:
    return PaymentAuthorized(
        order_id=order_id,
        payment_id=payment_id(order_id),
        amount=Decimal(amount),
        currency="EUR",
        method=PaymentMethod.CARD,
        authorized_at=NOW,
    )


def declined(order_id: str) -> PaymentDeclined:
    return PaymentDeclined(
        order_id=order_id,
        amount=Decimal("19.98"),
        currency="EUR",
        decline_code="insufficient_funds",
        declined_at=NOW,
    )


def fraud_cleared(order_id: str) -> FraudCleared:
    return FraudCleared(order_id=order_id, score=10, checked_at=NOW)


def fraud_suspected(order_id: str) -> FraudSuspected:
    return FraudSuspected(
        order_id=order_id, score=95, signals=["customer on a watch list"], checked_at=NOW
    )


def approved(order_id: str, approver: str = "auto") -> OrderApproved:
    return OrderApproved(order_id=order_id, approver=approver, approved_at=NOW)


def rejected(order_id: str) -> OrderRejected:
    return OrderRejected(
        order_id=order_id, approver="manager", comment="not today", rejected_at=NOW
    )


def shipment_created(order_id: str) -> ShipmentCreated:
    return ShipmentCreated(
        order_id=order_id,
        shipment_id=shipment_id(order_id),
        carrier="parcelco",
        tracking_number="PC0000000001",
        created_at=NOW,
    )


def shipment_failed(order_id: str) -> ShipmentFailed:
    return ShipmentFailed(
        order_id=order_id,
        carrier="parcelco",
        reason="carrier API timed out",
        attempts=4,
        failed_at=NOW,
    )


def committed(order_id: str) -> StockCommitted:
    return StockCommitted(
        order_id=order_id, reservation_id=reservation_id(order_id), committed_at=NOW
    )


def commit_failed(order_id: str) -> StockCommitFailed:
    return StockCommitFailed(order_id=order_id, sku="DMG-1", reason="units damaged", failed_at=NOW)


def captured(order_id: str, amount: str = "19.98") -> PaymentCaptured:
    return PaymentCaptured(
        order_id=order_id,
        payment_id=payment_id(order_id),
        amount=Decimal(amount),
        currency="EUR",
        captured_at=NOW,
    )


def confirmation_sent(order_id: str) -> ConfirmationSent:
    return ConfirmationSent(order_id=order_id, customer_id="c-1", channel="email", sent_at=NOW)


def survey_due(order_id: str) -> SurveyDue:
    return SurveyDue(order_id=order_id, customer_id="c-1", due_at=NOW)


def survey_sent(order_id: str) -> SurveySent:
    return SurveySent(order_id=order_id, customer_id="c-1", sent_at=NOW)


# -- compensations ----------------------------------------------------


def release_stock(order_id: str) -> ReleaseStock:
    return ReleaseStock(
        order_id=order_id, reservation_id=reservation_id(order_id), reason="test", requested_at=NOW
    )


def void_authorization(order_id: str) -> VoidAuthorization:
    return VoidAuthorization(
        order_id=order_id, payment_id=payment_id(order_id), reason="test", requested_at=NOW
    )


def refund_payment(order_id: str, amount: str = "19.98") -> RefundPayment:
    return RefundPayment(
        order_id=order_id,
        payment_id=payment_id(order_id),
        amount=Decimal(amount),
        currency="EUR",
        reason="test",
        requested_at=NOW,
    )


def cancel_shipment(order_id: str) -> CancelShipment:
    return CancelShipment(
        order_id=order_id,
        shipment_id=shipment_id(order_id),
        carrier="parcelco",
        reason="test",
        requested_at=NOW,
    )


def cancel_order(order_id: str, reason: str = "test") -> CancelOrder:
    return CancelOrder(order_id=order_id, reason=reason, requested_at=NOW)


def order_cancelled(
    order_id: str, reason: CancellationReason = CancellationReason.OTHER
) -> OrderCancelled:
    return OrderCancelled(order_id=order_id, reason=reason, cancelled_at=NOW)
