"""The payments service on the in-memory transport: holds, captures, and undoing both."""

from __future__ import annotations

from decimal import Decimal

import pytest
from builders import (
    new_order_id,
    payment_id,
    placed,
    refund_payment,
    shipment_created,
    void_authorization,
)

from choreo.testing import TestService
from services import payments
from services.events import (
    AuthorizationVoided,
    PaymentAuthorized,
    PaymentCaptured,
    PaymentDeclined,
    PaymentRefunded,
)

pytestmark = [pytest.mark.stack, pytest.mark.usefixtures("shop_db")]


def test_a_placed_order_has_its_total_authorized() -> None:
    order_id = new_order_id()
    with TestService(payments.svc, idempotency=payments.svc.idempotency) as t:
        t.send(placed(order_id, quantity=3, unit_price="10.00"))
        [authorized] = t.emitted(PaymentAuthorized)
    assert (authorized.order_id, authorized.amount, authorized.currency) == (
        order_id,
        Decimal("30.00"),
        "EUR",
    )
    assert t.emitted(PaymentDeclined) == []


def test_a_card_without_funds_is_declined_with_the_processors_code() -> None:
    order_id = new_order_id()
    with TestService(payments.svc, idempotency=payments.svc.idempotency) as t:
        t.send(placed(order_id, customer_id="nofunds-7"))
        [declined] = t.emitted(PaymentDeclined)
    assert (declined.order_id, declined.amount) == (order_id, Decimal("19.98"))
    assert declined.decline_code == "insufficient_funds"
    assert t.emitted(PaymentAuthorized) == []


def test_a_redelivered_order_keeps_its_first_authorization() -> None:
    order = placed(new_order_id())
    with TestService(payments.svc, idempotency=payments.svc.idempotency) as t:
        t.send(order)
        t.send(order)
        first, second = t.emitted(PaymentAuthorized)
    assert second.payment_id == first.payment_id


def test_shipping_captures_what_was_authorized() -> None:
    order_id = new_order_id()
    with TestService(payments.svc, idempotency=payments.svc.idempotency) as t:
        t.send(placed(order_id, quantity=1, unit_price="42.00"))
        t.send(shipment_created(order_id))
        [authorized] = t.emitted(PaymentAuthorized)
        [captured] = t.emitted(PaymentCaptured)
    assert captured.payment_id == authorized.payment_id
    assert (captured.amount, captured.currency) == (Decimal("42.00"), "EUR")


def test_a_voided_hold_cannot_be_captured_and_the_shipment_is_dead_lettered() -> None:
    order_id = new_order_id()
    with TestService(payments.svc, idempotency=payments.svc.idempotency, raise_errors=False) as t:
        t.send(placed(order_id))
        t.send(void_authorization(order_id))
        t.send(shipment_created(order_id))
        [parked] = t.dead_letters("shop.shipping")
    assert t.emitted(PaymentCaptured) == []
    assert order_id.encode() in (parked.header("choreo_dlq_error_message") or b"")


def test_voiding_and_refunding_confirm_even_for_unknown_orders() -> None:
    order_id = new_order_id()  # never authorized here
    with TestService(payments.svc, idempotency=payments.svc.idempotency) as t:
        t.send(void_authorization(order_id))
        t.send(refund_payment(order_id, amount="12.50"))
        [voided] = t.emitted(AuthorizationVoided)
        [refunded] = t.emitted(PaymentRefunded)
    assert (voided.order_id, voided.payment_id) == (order_id, payment_id(order_id))
    assert (refunded.payment_id, refunded.amount) == (payment_id(order_id), Decimal("12.50"))


def test_a_restart_between_authorizing_and_capturing_forgets_nothing() -> None:
    order_id = new_order_id()
    with TestService(payments.svc, idempotency=payments.svc.idempotency) as t:
        t.send(placed(order_id))
        [authorized] = t.emitted(PaymentAuthorized)
    with TestService(
        payments.svc, idempotency=payments.svc.idempotency
    ) as t:  # a new process: only the database remembers
        t.send(shipment_created(order_id))
        [captured] = t.emitted(PaymentCaptured)
    assert (captured.payment_id, captured.amount) == (authorized.payment_id, authorized.amount)
