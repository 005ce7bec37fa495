"""The fraud service: scores every placed order before anything ships.

Run it with ``choreo run services.fraud``. Stateless: the score depends on the order only.
"""

from __future__ import annotations

from datetime import UTC, datetime

import choreo
from services import providers
from services.events import FraudCleared, FraudSuspected, OrderPlaced

svc = choreo.Service("fraud")


@svc.on(OrderPlaced)
def score(event: OrderPlaced, ctx: choreo.Context) -> None:
    points, signals = providers.fraud_score(event.customer_id, event.total)
    now = datetime.now(UTC)
    if points >= providers.FRAUD_THRESHOLD:
        ctx.emit(
            FraudSuspected(order_id=event.order_id, score=points, signals=signals, checked_at=now)
        )
    else:
        ctx.emit(FraudCleared(order_id=event.order_id, score=points, checked_at=now))
