"""The approvals service (the join after the checks, the queue for people) and the manager's
desk, on the in-memory transport with their state in the real PostgreSQL."""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Callable
from decimal import Decimal

import psycopg
import pytest
from builders import (
    authorized,
    fraud_cleared,
    new_order_id,
    order_cancelled,
    placed,
    reserved,
)
from psycopg.conninfo import make_conninfo
from shop_kit import emitted_ids, redeliver

from choreo import Event
from choreo.testing import TestService
from services import approval_desk, approvals
from services.events import ApprovalRequested, OrderApproved, OrderPlaced, OrderRejected
from services.settings import APPROVAL_TIMEOUT

pytestmark = [pytest.mark.stack, pytest.mark.usefixtures("shop_db")]

CHECKS: list[Callable[[str], Event]] = [reserved, authorized, fraud_cleared]
"""What inventory, payments and fraud publish when an order passes their check."""


def _order(order_id: str, total: str = "19.98") -> OrderPlaced:
    return placed(order_id, quantity=1, unit_price=total)


def _join(t: TestService, total: str) -> str:
    """A new order of ``total`` that passed every check; its id."""
    order_id = new_order_id("approve")
    t.send(_order(order_id, total), settle=False)
    for check in CHECKS:
        t.send(check(order_id), settle=False)
    t.settle()
    return order_id


def _queue(shop_db: str) -> list[str]:
    return [p.order_id for p in approvals.pending(shop_db)]


def test_every_arrival_order_of_the_four_events_decides_exactly_once() -> None:
    arrivals = {new_order_id("join"): a for a in itertools.permutations([_order, *CHECKS])}
    with TestService(approvals.svc, idempotency=approvals.svc.idempotency) as t:
        for seen in range(1, 5):  # one event of every order a round, each order its own sequence
            for order_id, arrival in arrivals.items():
                t.send(arrival[seen - 1](order_id), settle=False)
            t.settle()
            decided = [e.order_id for e in t.emitted(OrderApproved)]
            expected = list(arrivals) if seen == 4 else []
            assert sorted(decided) == sorted(expected), f"after {seen} of 4 events"
    assert {e.approver for e in t.emitted(OrderApproved)} == {approvals.AUTO_APPROVER}
    assert t.emitted(ApprovalRequested) == []


def test_an_order_below_the_limit_is_approved_automatically(shop_db: str) -> None:
    with TestService(approvals.svc, idempotency=approvals.svc.idempotency) as t:
        order_id = _join(t, "999.99")
        [decision] = t.emitted(OrderApproved)
    assert (decision.order_id, decision.approver) == (order_id, "auto")
    assert t.emitted(ApprovalRequested) == []
    assert order_id not in _queue(shop_db)


@pytest.mark.parametrize("total", ["1000.00", "2500.00"])
def test_an_order_from_the_limit_up_waits_for_a_person(shop_db: str, total: str) -> None:
    with TestService(approvals.svc, idempotency=approvals.svc.idempotency) as t:
        order_id = _join(t, total)
        [request] = t.emitted(ApprovalRequested)
    assert (request.order_id, request.customer_id) == (order_id, "c-1")
    assert (request.total, request.currency) == (Decimal(total), "EUR")
    assert request.expires_at - request.requested_at == APPROVAL_TIMEOUT
    assert t.emitted(OrderApproved) == []
    [waiting] = [p for p in approvals.pending(shop_db) if p.order_id == order_id]
    assert (waiting.total, waiting.customer_id) == (Decimal(total), "c-1")


def test_a_check_published_again_does_not_decide_twice() -> None:
    with TestService(approvals.svc, idempotency=approvals.svc.idempotency) as t:
        low, high = _join(t, "10.00"), _join(t, "1500.00")
        for order_id in (low, high):
            for check in CHECKS:
                t.send(check(order_id))  # e.g. inventory answering a redelivered order again
        assert [e.order_id for e in t.emitted(OrderApproved)] == [low]
        assert [e.order_id for e in t.emitted(ApprovalRequested)] == [high]


def test_a_redelivered_check_replays_the_decision_it_made_under_the_same_id() -> None:
    with TestService(approvals.svc, idempotency=approvals.svc.idempotency) as t:
        order_id = _join(t, "10.00")
        for topic in ("shop.orders", "shop.inventory", "shop.payments", "shop.fraud"):
            for record in t.records(topic):
                redeliver(t, record)  # the one that completed the set among them
        ids = emitted_ids(t, OrderApproved)
    assert len(ids) == 2  # Kafka may carry the decision twice after a crash...
    assert len(set(ids)) == 1  # ...but it is one decision: consumers drop it by ce_id
    assert [e.order_id for e in t.emitted(OrderApproved)] == [order_id, order_id]


def test_the_queue_lists_waiting_orders_oldest_first_until_someone_decides(
    shop_db: str,
) -> None:
    with TestService(approvals.svc, idempotency=approvals.svc.idempotency) as t:
        first, second, third = (_join(t, "1200.00") for _ in range(3))
        queue = _queue(shop_db)
        assert queue.index(first) < queue.index(second) < queue.index(third)
        t.send(approvals.decision(first, "manager", None))
        t.send(approvals.decision(second, "manager", "address is a PO box"))
        t.send(order_cancelled(third))  # the saga gave up waiting
        [approval] = [e for e in t.emitted(OrderApproved) if e.order_id == first]
        [rejection] = t.emitted(OrderRejected)
    assert {first, second, third}.isdisjoint(_queue(shop_db))
    assert approval.approver == "manager"
    assert (rejection.order_id, rejection.comment) == (second, "address is a PO box")


def test_a_decision_for_an_order_that_is_not_waiting_is_dropped() -> None:
    with TestService(approvals.svc, idempotency=approvals.svc.idempotency) as t:
        auto = _join(t, "50.00")
        twice = _join(t, "1250.00")
        cancelled = _join(t, "1250.00")
        t.send(order_cancelled(cancelled))
        t.send(approvals.decision(twice, "ann", None))
        for order_id in (auto, twice, cancelled, new_order_id("never-placed")):
            t.send(approvals.decision(order_id, "bob", "no"))
        decided = [(e.order_id, e.approver) for e in t.emitted(OrderApproved)]
        assert decided == [(auto, "auto"), (twice, "ann")]
        assert t.emitted(OrderRejected) == []


def test_checks_that_arrive_after_a_cancellation_decide_nothing() -> None:
    with TestService(approvals.svc, idempotency=approvals.svc.idempotency) as t:
        order_id = new_order_id("late")
        t.send(_order(order_id))
        t.send(order_cancelled(order_id))  # e.g. fraud was suspected meanwhile
        for check in CHECKS:
            t.send(check(order_id), settle=False)
        t.settle()
        assert t.emitted(OrderApproved) == []
        assert t.emitted(ApprovalRequested) == []


def test_the_desk_lists_waiting_orders(shop_db: str, capsys: pytest.CaptureFixture[str]) -> None:
    with TestService(approvals.svc, idempotency=approvals.svc.idempotency) as t:
        order_id = _join(t, "1300.00")
    assert approval_desk.main(["ls"]) == 0
    [line] = [line for line in capsys.readouterr().out.splitlines() if order_id in line]
    assert "c-1  1300.00 EUR" in line


def test_the_desk_refuses_orders_that_are_not_waiting(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with TestService(approvals.svc, idempotency=approvals.svc.idempotency) as t:
        auto = _join(t, "50.00")
        cancelled = _join(t, "1400.00")
        t.send(order_cancelled(cancelled))
    for order_id, command in [
        (auto, ["approve", auto]),
        (cancelled, ["approve", cancelled]),
        (cancelled, ["reject", cancelled, "--comment", "too late"]),
        ("never-placed", ["approve", "never-placed"]),
    ]:
        assert approval_desk.main(command) == 1
        assert f"order {order_id} is not waiting for approval" in capsys.readouterr().err


def test_a_decision_with_a_comment_is_a_rejection() -> None:
    assert approvals.decision("o-1", "ann", None).approved
    rejection = approvals.decision("o-1", "ann", "address is a PO box")
    assert not rejection.approved
    assert (rejection.approver, rejection.comment) == ("ann", "address is a PO box")


def test_a_desk_opened_before_the_service_ran_sees_an_empty_queue(
    shop_db: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The demo's manager starts with the fleet, before approvals has created its table."""
    schema = f"fresh_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(shop_db, autocommit=True) as connection:
        connection.execute(f"CREATE SCHEMA {schema}")
    try:
        untouched = make_conninfo(shop_db, options=f"-c search_path={schema}")
        assert approvals.pending(untouched) == []
        monkeypatch.setattr(approval_desk, "DSN", untouched)
        assert approval_desk.main(["ls"]) == 0
        assert approval_desk.main(["approve", "o-1"]) == 1
        assert "order o-1 is not waiting for approval" in capsys.readouterr().err
    finally:
        with psycopg.connect(shop_db, autocommit=True) as connection:
            connection.execute(f"DROP SCHEMA {schema} CASCADE")
