"""The fraud service on the in-memory transport: who is cleared and who is stopped."""

from __future__ import annotations

from builders import new_order_id, placed

from choreo.testing import TestService
from services import fraud, providers
from services.events import FraudCleared, FraudSuspected


def test_an_ordinary_order_is_cleared_with_a_low_score() -> None:
    order_id = new_order_id()
    with TestService(fraud.svc) as t:
        t.send(placed(order_id))
        [cleared] = t.emitted(FraudCleared)
    assert cleared.order_id == order_id
    assert cleared.score < providers.FRAUD_THRESHOLD
    assert t.emitted(FraudSuspected) == []


def test_a_customer_on_the_watch_list_is_suspected_with_the_signal() -> None:
    order_id = new_order_id()
    with TestService(fraud.svc) as t:
        t.send(placed(order_id, customer_id="fraud-3"))
        [suspected] = t.emitted(FraudSuspected)
    assert suspected.order_id == order_id
    assert suspected.score >= providers.FRAUD_THRESHOLD
    assert suspected.signals == ["customer on a watch list"]
    assert t.emitted(FraudCleared) == []


def test_a_large_order_alone_raises_the_score_but_is_cleared() -> None:
    with TestService(fraud.svc) as t:
        t.send(placed(new_order_id()))
        t.send(placed(new_order_id(), quantity=1, unit_price="5000.00"))
        small, large = t.emitted(FraudCleared)
    assert small.score < large.score < providers.FRAUD_THRESHOLD
    assert t.emitted(FraudSuspected) == []
