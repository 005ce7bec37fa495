"""Settings the order services share, from the environment: their database and their waits.

Production values are the defaults; the demo shortens the waits (a week of follow-up becomes
seconds) without changing any code path, so what the demo shows is what runs in production.
"""

from __future__ import annotations

import os
from datetime import timedelta

DSN = os.environ.get(
    "SHOP_DSN",
    f"postgresql://choreo:choreo@127.0.0.1:{os.environ.get('CHOREO_POSTGRES_PORT', '5432')}/choreo",
)
"""Where services that keep state (approvals, notifications) keep it, each in its own tables;
by default the local stack's PostgreSQL (``choreo dev up``)."""


def _seconds(name: str, default: timedelta) -> timedelta:
    raw = os.environ.get(name)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r} is not a number of seconds") from None
    if value <= 0:
        raise ValueError(f"{name}={raw!r} must be positive")
    return timedelta(seconds=value)


FOLLOW_UP_DELAY = _seconds("SHOP_FOLLOW_UP_DELAY_S", timedelta(days=7))
"""From the order confirmation to the satisfaction survey."""
APPROVAL_TIMEOUT = _seconds("SHOP_APPROVAL_TIMEOUT_S", timedelta(days=1))
"""How long a high-value order waits for a manager before it is cancelled."""
SHIPMENT_TIMEOUT = _seconds("SHOP_SHIPMENT_TIMEOUT_S", timedelta(hours=1))
"""How long booking a shipment may take, carrier retries included."""
ORDER_TIMEOUT = FOLLOW_UP_DELAY + APPROVAL_TIMEOUT + SHIPMENT_TIMEOUT + timedelta(hours=1)
"""The whole saga: every step above plus an hour for the quick ones."""
