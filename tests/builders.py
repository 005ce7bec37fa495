"""Realistic events for tests (importable as ``builders``: tests/ is on sys.path)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from services.events import Address, LineItem, OrderPlaced, OrderReceived


def received(order_id: str = "o-1", currency: str = "EUR", sku: str = "SKU-1") -> OrderReceived:
    return OrderReceived(
        order_id=order_id,
        customer_id="c-1",
        items=[LineItem(sku=sku, quantity=2, unit_price=Decimal("9.99"))],
        currency=currency,
        shipping_address=Address(line1="1 Main St", city="Ghent", postal_code="9000", country="BE"),
        received_at=datetime(2026, 11, 21, 12, 0, tzinfo=UTC),
    )


def placed(order_id: str = "o-1", sku: str = "SKU-1") -> OrderPlaced:
    order = received(order_id, sku=sku)
    return OrderPlaced(
        order_id=order.order_id,
        customer_id=order.customer_id,
        items=order.items,
        total=Decimal("19.98"),
        currency=order.currency,
        shipping_address=order.shipping_address,
        placed_at=order.received_at,
    )
