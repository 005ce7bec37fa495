"""The shipping service on the in-memory transport: bookings, the carrier's failures, retries."""

from __future__ import annotations

import zlib
from datetime import UTC, datetime, timedelta

import pytest
from builders import approved, cancel_shipment, new_order_id, placed, shipment_id

from choreo._runtime.retry_topics import retry_topic
from choreo.testing import TestService
from services import shipping
from services.events import (
    BackupShipmentFailed,
    BookBackupCarrier,
    ShipmentCancelled,
    ShipmentCreated,
    ShipmentFailed,
)

pytestmark = [pytest.mark.stack, pytest.mark.usefixtures("shop_db")]

APPROVALS = "shop.approvals"


def test_an_approved_order_is_booked_with_the_carrier_to_its_address() -> None:
    order_id = new_order_id()
    with TestService(shipping.svc, idempotency=shipping.svc.idempotency) as t:
        t.send(placed(order_id))
        t.send(approved(order_id))
        [created] = t.emitted(ShipmentCreated)
    assert created.order_id == order_id
    assert created.carrier == "parcelco"
    assert created.tracking_number == f"PC{zlib.crc32(order_id.encode()):010d}"


def test_a_duplicate_approval_books_nothing_new() -> None:
    order_id = new_order_id()
    with TestService(shipping.svc, idempotency=shipping.svc.idempotency) as t:
        t.send(placed(order_id))
        t.send(approved(order_id))
        t.send(approved(order_id, approver="manager"))
        first, second = t.emitted(ShipmentCreated)
    assert second.shipment_id == first.shipment_id


def test_a_flaky_carrier_is_retried_in_place_and_books_on_the_second_attempt() -> None:
    order_id = new_order_id()
    with TestService(shipping.svc, idempotency=shipping.svc.idempotency, raise_errors=False) as t:
        t.send(placed(order_id, postal_code="99999"))
        t.send(approved(order_id))
        [created] = t.emitted(ShipmentCreated)
        assert t.records(retry_topic("shipping", APPROVALS, 1)) == []
        assert t.dead_letters(APPROVALS) == []
    assert created.order_id == order_id
    assert t.emitted(ShipmentFailed) == []


def test_a_carrier_down_through_every_retry_fails_the_shipment_on_the_last_attempt() -> None:
    order_id = new_order_id()
    with TestService(shipping.svc, idempotency=shipping.svc.idempotency, raise_errors=False) as t:
        t.send(placed(order_id, postal_code="00000"))
        t.send(approved(order_id))
        for delay_s in shipping.CARRIER_RETRY.delays_s:
            assert t.emitted(ShipmentFailed) == []  # the next try waits for its delay
            t.advance(timedelta(seconds=delay_s))
        [failed] = t.emitted(ShipmentFailed)
        waited = [
            t.records(retry_topic("shipping", APPROVALS, level))
            for level in range(1, len(shipping.CARRIER_RETRY.delays_s) + 1)
        ]
        assert t.dead_letters(APPROVALS) == []
    assert failed.order_id == order_id
    assert failed.attempts == shipping.LAST_ATTEMPT == 4
    assert "carrier API timed out" in failed.reason
    # Two tries in place, then one after each delay on its own retry topic.
    assert [[r.header("choreo_retry_attempts") for r in level] for level in waited] == [
        [b"2"],
        [b"3"],
    ]
    assert t.emitted(ShipmentCreated) == []


def test_an_approval_whose_address_never_came_is_dead_lettered_after_every_retry() -> None:
    order_id = new_order_id()
    with TestService(shipping.svc, idempotency=shipping.svc.idempotency, raise_errors=False) as t:
        t.send(approved(order_id))
        t.advance(timedelta(minutes=1))  # past every delayed retry
        [parked] = t.dead_letters(APPROVALS)
    assert b"no address yet" in (parked.header("choreo_dlq_error_message") or b"")
    assert t.emitted(ShipmentCreated) == []
    assert t.emitted(ShipmentFailed) == []


def test_cancelling_a_shipment_confirms_even_for_an_unknown_order() -> None:
    order_id = new_order_id()
    with TestService(shipping.svc, idempotency=shipping.svc.idempotency) as t:
        t.send(cancel_shipment(order_id))
        [cancelled] = t.emitted(ShipmentCancelled)
    assert (cancelled.order_id, cancelled.shipment_id) == (order_id, shipment_id(order_id))


def _book_backup(order_id: str) -> BookBackupCarrier:
    """The order saga's fallback command after parcelco refused."""
    return BookBackupCarrier(
        order_id=order_id, carrier="parcelco", reason="timed out", requested_at=datetime.now(UTC)
    )


def test_the_backup_carrier_books_what_the_usual_one_refused_once() -> None:
    order_id = new_order_id()
    with TestService(shipping.svc, idempotency=shipping.svc.idempotency) as t:
        t.send(placed(order_id, postal_code="00001"))
        t.send(_book_backup(order_id))
        t.send(_book_backup(order_id))  # a second command books nothing new
        first, second = t.emitted(ShipmentCreated)
    assert (first.carrier, first.tracking_number[:2]) == ("swiftship", "SW")
    assert second.shipment_id == first.shipment_id
    assert t.emitted(BackupShipmentFailed) == []


def test_the_backup_carrier_refusing_too_is_final() -> None:
    order_id = new_order_id()
    with TestService(shipping.svc, idempotency=shipping.svc.idempotency) as t:
        t.send(placed(order_id, postal_code="00000"))
        t.send(_book_backup(order_id))
        [refused] = t.emitted(BackupShipmentFailed)
    assert (refused.order_id, refused.carrier) == (order_id, "swiftship")
    assert "does not deliver to 00000" in refused.reason
    assert t.emitted(ShipmentCreated) == []
