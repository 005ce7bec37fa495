"""Stand-ins for the third-party systems the shop calls: card processor, fraud model, carrier.

Their answers are decided by the data (customer, SKU, postal code), so every demo scenario is
reproducible and a test can ask for each failure by name. Only these calls are simulated;
everything between the services goes through Kafka.
"""

from __future__ import annotations

import zlib
from decimal import Decimal

HIGH_VALUE = Decimal("1000.00")
"""Orders at or above this total need a manager's approval."""

DECLINED_CUSTOMER_PREFIX = "nofunds-"
"""Cards of these customers are declined at authorization."""
FRAUD_CUSTOMER_PREFIX = "fraud-"
"""These customers score above the fraud threshold."""
OUT_OF_STOCK_SKU_PREFIX = "OOS-"
"""SKUs never in stock."""
DAMAGED_SKU_PREFIX = "DMG-"
"""SKUs that reserve fine but are found damaged when picked for shipping."""
CARRIER_DOWN_POSTCODE = "00000"
"""The carrier's API is down for this area through every retry."""
CARRIER_FLAKY_POSTCODE = "99999"
"""The carrier's API fails the first call for this area, then works."""
BACKUP_CARRIER_POSTCODE = "00001"
"""The usual carrier's API is down for this area; the backup carrier takes it."""
BACKUP_CARRIER = "swiftship"
"""The carrier the order saga falls back to when the usual one refuses."""

FRAUD_THRESHOLD = 80


class CarrierUnavailable(Exception):
    """The carrier's booking API did not answer; worth retrying."""


def authorize(customer_id: str, amount: Decimal) -> str | None:
    """A decline code, or None when the card processor holds ``amount``."""
    if customer_id.startswith(DECLINED_CUSTOMER_PREFIX):
        return "insufficient_funds"
    return None


def fraud_score(customer_id: str, total: Decimal) -> tuple[int, list[str]]:
    """0..100 and the signals behind it."""
    signals: list[str] = []
    if customer_id.startswith(FRAUD_CUSTOMER_PREFIX):
        signals.append("customer on a watch list")
    if total >= 5 * HIGH_VALUE:
        signals.append("unusually large order")
    score = min(100, 10 + 75 * ("customer on a watch list" in signals) + 10 * len(signals))
    return score, signals


def book_shipment(order_id: str, postal_code: str, attempt: int) -> tuple[str, str]:
    """(carrier, tracking number) or :class:`CarrierUnavailable`."""
    if postal_code in (CARRIER_DOWN_POSTCODE, BACKUP_CARRIER_POSTCODE) or (
        postal_code == CARRIER_FLAKY_POSTCODE and attempt == 1
    ):
        raise CarrierUnavailable(f"carrier API timed out booking {order_id}")
    return "parcelco", f"PC{zlib.crc32(order_id.encode()):010d}"


def book_backup_shipment(order_id: str, postal_code: str) -> tuple[str, str]:
    """(carrier, tracking number) from the backup carrier, or :class:`CarrierUnavailable`
    (it does not serve the area where even the usual carrier is down for good)."""
    if postal_code == CARRIER_DOWN_POSTCODE:
        raise CarrierUnavailable(f"{BACKUP_CARRIER} does not deliver to {postal_code}")
    return BACKUP_CARRIER, f"SW{zlib.crc32(order_id.encode()):010d}"
