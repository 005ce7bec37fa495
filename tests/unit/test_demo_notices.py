"""The demo's verdict on customer notices: it fails the run when a customer is not told, told
twice, or told of a rejection without the manager's words."""

from __future__ import annotations

from datetime import UTC, datetime

from demo import view
from demo.scenarios import SCENARIOS, Manager, PlannedOrder
from services.events import CancellationSent

QUOTE = "too large for a first order"
REJECTED = next(s for s in SCENARIOS if s.manager is Manager.REJECT)
DECLINED = next(s for s in SCENARIOS if s.failed_step == "authorize-payment")
COMPLETED = next(s for s in SCENARIOS if s.expected == "completed")
VERDICTS = [
    view.Verdict(PlannedOrder(order_id, scenario, {}), None)
    for order_id, scenario in (("r", REJECTED), ("d", DECLINED), ("c", COMPLETED))
]


def _notice(order_id: str, message: str) -> CancellationSent:
    return CancellationSent(
        order_id=order_id,
        customer_id="c-1",
        reason="X",
        message=message,
        channel="email",
        sent_at=datetime.now(UTC),
    )


GOOD = {"r": {"1": _notice("r", f"not approved: {QUOTE}")}, "d": {"2": _notice("d", "declined")}}
"""The rejected and the declined order's customers told once each, the rejection quoted."""


def test_every_cancelled_customer_told_once_with_the_rejection_quoted_passes() -> None:
    lines, ok = view.notices(VERDICTS, GOOD, QUOTE)
    assert ok
    assert "2 of 2 expected" in lines[1]
    assert f'read: "not approved: {QUOTE}"' in lines[2]


def test_a_customer_not_told_told_twice_or_told_without_the_quote_fails_the_run() -> None:
    for changed, problem in (
        ({"d": {}}, "NOT TOLD d"),
        ({"d": {"2": _notice("d", "declined"), "3": _notice("d", "declined")}}, "TOLD 2 TIMES d"),
        ({"r": {"1": _notice("r", "not approved")}}, "REJECTION NOT QUOTED r"),
        ({"c": {"4": _notice("c", "cancelled")}}, "TOLD BUT NOT CANCELLED c"),
    ):
        sent = {order_id: by_id for order_id, by_id in {**GOOD, **changed}.items() if by_id}
        lines, ok = view.notices(VERDICTS, sent, QUOTE)
        assert not ok and any(problem in line for line in lines), (problem, lines)
