"""The orders the demo sends, each built to end its saga in a known state for a known reason.

What makes an order fail is in its data (see ``services.providers``): a customer whose card is
declined, an SKU out of stock, a postcode where the carrier's API is down. A scenario also says
what the manager does with it if it waits for approval, and whether its customer cancels it
(at a random point: often while its saga runs, sometimes after it completed).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any

from services import providers


class Manager(StrEnum):
    """What the demo's manager does when the order waits for approval."""

    NONE = "none"
    APPROVE = "approve"
    REJECT = "reject"
    IGNORE = "ignore"
    """Let the approval deadline pass."""


@dataclass(frozen=True)
class Scenario:
    name: str
    weight: int
    expected: str
    """The saga's final status."""
    failed_step: str | None = None
    """The step whose failure (or missed deadline) started the compensation."""
    customer_prefix: str = "cust-"
    sku: str = "SKU-{n}"
    unit_price: str = "24.50"
    postal_code: str = "9000"
    currency: str = "EUR"
    manager: Manager = Manager.NONE
    cancel: bool = False
    """The customer cancels the order ``PlannedOrder.cancel_after_s`` after it was accepted:
    compensated if the saga is still running then, else completed with the cancel reported
    (not applied)."""

    @property
    def customer_told(self) -> bool:
        """Whether the customer gets a notice that the order will not go through."""
        return self.expected == "compensated"


SCENARIOS = (
    Scenario("completed", 56, "completed"),
    Scenario(
        "completed after a carrier retry",
        5,
        "completed",
        postal_code=providers.CARRIER_FLAKY_POSTCODE,
    ),
    Scenario("high value, approved", 5, "completed", unit_price="650.00", manager=Manager.APPROVE),
    Scenario("out of stock", 6, "compensated", "reserve-stock", sku="OOS-{n}"),
    Scenario(
        "card declined",
        6,
        "compensated",
        "authorize-payment",
        customer_prefix=providers.DECLINED_CUSTOMER_PREFIX,
    ),
    Scenario(
        "fraud suspected",
        4,
        "compensated",
        "fraud-check",
        customer_prefix=providers.FRAUD_CUSTOMER_PREFIX,
    ),
    Scenario("invalid order", 3, "compensated", "validate", currency="XXX"),
    Scenario(
        "high value, rejected",
        3,
        "compensated",
        "approval",
        unit_price="650.00",
        manager=Manager.REJECT,
    ),
    Scenario(
        "high value, nobody decided",
        2,
        "compensated",
        "approval",
        unit_price="650.00",
        manager=Manager.IGNORE,
    ),
    Scenario(
        "carrier down",
        4,
        "compensated",
        "create-shipment",
        postal_code=providers.CARRIER_DOWN_POSTCODE,
    ),
    Scenario("damaged at pick", 3, "compensated", "commit-stock", sku="DMG-{n}"),
    Scenario(
        "carrier down, backup carrier",
        3,
        "completed",
        postal_code=providers.BACKUP_CARRIER_POSTCODE,
    ),
    Scenario("cancelled by the customer", 5, "compensated", cancel=True),
)
CANCEL_WINDOW_S = 15.0
"""A customer's cancel goes out up to this long after the order was accepted: a normal order
completes some 6-10 s in (the demo's 5 s survey wait after shipping), so most cancels land
while it runs and some after it completed."""


@dataclass(frozen=True)
class PlannedOrder:
    order_id: str
    scenario: Scenario
    body: dict[str, Any]
    cancel_after_s: float | None = None


def plan(count: int, run_id: str, seed: int = 7) -> list[PlannedOrder]:
    """Every scenario at least once, the rest drawn by weight (reproducibly), shuffled."""
    if count < len(SCENARIOS):
        raise ValueError(f"send at least {len(SCENARIOS)} orders, one per scenario")
    rng = random.Random(seed)
    chosen = list(SCENARIOS) + rng.choices(
        SCENARIOS, weights=[s.weight for s in SCENARIOS], k=count - len(SCENARIOS)
    )
    rng.shuffle(chosen)
    return [_order(f"{run_id}-{n:04d}", n, scenario, rng) for n, scenario in enumerate(chosen)]


def _order(order_id: str, n: int, scenario: Scenario, rng: random.Random) -> PlannedOrder:
    body = {
        "order_id": order_id,
        "customer_id": f"{scenario.customer_prefix}{rng.randrange(10_000):04d}",
        "items": [
            {
                "sku": scenario.sku.format(n=rng.randrange(40)),
                "quantity": 2,
                "unit_price": str(Decimal(scenario.unit_price)),
            }
        ],
        "currency": scenario.currency,
        "shipping_address": {
            "line1": f"{rng.randrange(1, 200)} Main St",
            "city": "Ghent",
            "postal_code": scenario.postal_code,
            "country": "BE",
        },
        "received_at": datetime.now(UTC).isoformat(),
    }
    cancel_after_s = round(rng.uniform(0, CANCEL_WINDOW_S), 2) if scenario.cancel else None
    return PlannedOrder(order_id, scenario, body, cancel_after_s)
