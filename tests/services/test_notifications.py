"""The notifications service on the in-memory transport, its state in the real PostgreSQL."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest
from builders import (
    invalid,
    new_order_id,
    order_cancelled,
    received,
    rejected,
    shipment_created,
    survey_due,
)
from shop_kit import emitted_ids, redeliver

from choreo import _headers
from choreo.testing import TestService
from services import notifications
from services.events import (
    CancellationReason,
    CancellationSent,
    ConfirmationSent,
    SurveyDue,
    SurveySent,
)
from services.settings import FOLLOW_UP_DELAY

pytestmark = [pytest.mark.stack, pytest.mark.usefixtures("shop_db")]


def test_a_shipped_order_is_confirmed_and_its_survey_sent_a_follow_up_later() -> None:
    order_id = new_order_id()
    with TestService(notifications.svc, idempotency=notifications.svc.idempotency) as t:
        t.send(received(order_id, customer_id="c-42"))
        before_ms = time.time() * 1000
        t.send(shipment_created(order_id))
        after_ms = time.time() * 1000
        [confirmation] = t.emitted(ConfirmationSent)
        [due] = t.emitted(SurveyDue)
        [record] = t.records("shop.followups")
        t.advance(FOLLOW_UP_DELAY - timedelta(minutes=1))
        assert t.emitted(SurveySent) == []  # held until its time
        t.advance(timedelta(minutes=1))
        [sent] = t.emitted(SurveySent)
    assert (sent.order_id, sent.customer_id) == (order_id, "c-42")
    assert (confirmation.order_id, confirmation.customer_id) == (order_id, "c-42")
    assert (due.order_id, due.customer_id) == (order_id, "c-42")
    assert due.due_at - confirmation.sent_at == FOLLOW_UP_DELAY
    deliver_at_ms = int(record.header(_headers.DELIVER_AT_MS) or 0)
    delay_ms = FOLLOW_UP_DELAY.total_seconds() * 1000
    assert before_ms + delay_ms <= deliver_at_ms <= after_ms + delay_ms + 1
    # Held until the survey's own due time (the event keeps milliseconds, the header rounds up).
    assert 0 <= deliver_at_ms - round(due.due_at.timestamp() * 1000) <= 1


def test_a_redelivered_shipment_confirms_and_schedules_once() -> None:
    order_id = new_order_id()
    with TestService(notifications.svc, idempotency=notifications.svc.idempotency) as t:
        t.send(received(order_id))
        t.send(shipment_created(order_id))
        redeliver(t, t.records("shop.shipping")[-1])
        confirmations, surveys = emitted_ids(t, ConfirmationSent), emitted_ids(t, SurveyDue)
    # Replayed under their first ids, which consumers drop: one email, one survey.
    assert len(confirmations) == len(surveys) == 2
    assert len(set(confirmations)) == len(set(surveys)) == 1


def test_a_due_survey_is_sent() -> None:
    order_id = new_order_id()
    with TestService(notifications.svc, idempotency=notifications.svc.idempotency) as t:
        t.send(survey_due(order_id))
        [sent] = t.emitted(SurveySent)
    assert (sent.order_id, sent.customer_id) == (order_id, "c-1")
    assert sent.sent_at <= datetime.now(UTC)


def test_a_cancelled_order_gets_no_survey_even_one_scheduled_before() -> None:
    order_id, other = new_order_id(), new_order_id()
    with TestService(notifications.svc, idempotency=notifications.svc.idempotency) as t:
        t.send(received(order_id))
        t.send(order_cancelled(order_id))
        t.send(survey_due(order_id))
        t.send(survey_due(other))
        [sent] = t.emitted(SurveySent)
    assert sent.order_id == other


def test_a_shipment_before_its_order_is_retried_then_dead_lettered_not_confirmed() -> None:
    order_id = new_order_id()
    with TestService(
        notifications.svc, idempotency=notifications.svc.idempotency, raise_errors=False
    ) as t:
        t.send(shipment_created(order_id))
        [parked] = t.dead_letters("shop.shipping")
    assert b"no customer yet" in (parked.header("choreo_dlq_error_message") or b"")
    assert t.emitted(ConfirmationSent) == []


def test_a_cancelled_order_tells_its_customer_why_once() -> None:
    orders = {reason: new_order_id() for reason in CancellationReason if reason != "REJECTED"}
    with TestService(notifications.svc, idempotency=notifications.svc.idempotency) as t:
        for reason, order_id in orders.items():
            t.send(received(order_id, customer_id=f"c-{reason.lower()}"))
            t.send(order_cancelled(order_id, reason))
            t.send(order_cancelled(order_id, reason))  # a compensation the tracker retried
        sent = {n.order_id: n for n in t.emitted(CancellationSent)}
    assert len(t.emitted(CancellationSent)) == len(orders)
    for reason, order_id in orders.items():
        assert (sent[order_id].customer_id, sent[order_id].reason) == (
            f"c-{reason.lower()}",
            reason,
        )
    assert "out of stock" in sent[orders[CancellationReason.OUT_OF_STOCK]].message
    assert "declined" in sent[orders[CancellationReason.PAYMENT_DECLINED]].message
    assert len({n.message for n in sent.values()}) == len(orders)  # each reason its own words


def test_a_rejection_is_told_in_the_managers_words_even_when_it_arrives_late() -> None:
    order_id = new_order_id()
    with TestService(
        notifications.svc, idempotency=notifications.svc.idempotency, raise_errors=False
    ) as t:
        t.send(received(order_id, customer_id="c-7"))
        t.send(order_cancelled(order_id, CancellationReason.REJECTED))
        assert t.emitted(CancellationSent) == []  # waits on a retry topic...
        t.send(rejected(order_id))  # ...for the approvals topic's copy
        t.advance(timedelta(seconds=notifications.LATE_REJECTION_RETRY.delays_s[0]))
        [notice] = t.emitted(CancellationSent)
        assert t.dead_letters("shop.orders") == []
    assert (notice.customer_id, notice.reason) == ("c-7", "REJECTED")
    assert notice.message == "Your order was not approved: not today"


def test_a_rejection_never_seen_dead_letters_the_cancellation_with_the_reason() -> None:
    order_id = new_order_id()
    with TestService(
        notifications.svc, idempotency=notifications.svc.idempotency, raise_errors=False
    ) as t:
        t.send(received(order_id))
        t.send(order_cancelled(order_id, CancellationReason.REJECTED))
        t.advance(timedelta(seconds=sum(notifications.LATE_REJECTION_RETRY.delays_s)))
        [parked] = t.dead_letters("shop.orders")
        assert t.emitted(CancellationSent) == []
    assert b"no rejection seen yet" in (parked.header("choreo_dlq_error_message") or b"")


def test_an_order_never_placed_tells_its_customer_what_is_wrong() -> None:
    order_id = new_order_id()
    with TestService(notifications.svc, idempotency=notifications.svc.idempotency) as t:
        t.send(received(order_id, customer_id="c-9"))
        t.send(invalid(order_id))
        [notice] = t.emitted(CancellationSent)
    assert (notice.customer_id, notice.reason) == ("c-9", "INVALID")
    assert notice.message == "We could not take your order: order has no items."
