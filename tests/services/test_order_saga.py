"""The order saga (services/order_saga.py) on the engine, without Kafka: for each way an order
can go wrong, the compensations the tracker sends, in order, and where the saga ends.

The compensations are answered by the real services (orders, inventory, payments, shipping) on
the in-memory transport, so a command the tracker fills badly, or an answer that does not close
its step, fails here too.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from decimal import Decimal
from pathlib import Path

import builders as b
import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "saga"))

from engine_run import Run

from choreo import Event
from choreo._schemas import Catalog
from choreo.saga import SagaStatus, StepStatus
from choreo.testing import TestService
from services import inventory, orders, payments, shipping
from services.events import (
    BackupShipmentFailed,
    BookBackupCarrier,
    CancellationReason,
    CancelOrder,
    CancelShipment,
    OrderCancellationRequested,
    OrderCancelled,
    RefundPayment,
    ReleaseStock,
    ShipmentCreated,
    VoidAuthorization,
)
from services.order_saga import order_saga
from services.settings import APPROVAL_TIMEOUT, FOLLOW_UP_DELAY, SHIPMENT_TIMEOUT

pytestmark = [pytest.mark.stack, pytest.mark.usefixtures("shop_db")]

ROOT = Path(__file__).resolve().parents[2]

Make = Callable[[str], Event]

CHECKS: list[Make] = [b.reserved, b.authorized, b.fraud_cleared]
APPROVED: list[Make] = [*CHECKS, b.approved]
SHIPPED: list[Make] = [*APPROVED, b.shipment_created]
ALL_BUT_SURVEY: list[Make] = [*SHIPPED, b.captured, b.confirmation_sent, b.committed]
EVERYTHING_UNDONE = [RefundPayment, CancelShipment, VoidAuthorization, ReleaseStock, CancelOrder]
"""The compensations of an order that got as far as the capture, in the order they are sent."""


def backup_failed(order_id: str) -> BackupShipmentFailed:
    return BackupShipmentFailed(
        order_id=order_id, carrier="swiftship", reason="does not deliver there", failed_at=b.NOW
    )


def cancel_requested(order_id: str) -> OrderCancellationRequested:
    return OrderCancellationRequested(
        order_id=order_id, requested_by="c-1", reason="ordered by mistake", requested_at=b.NOW
    )


class Undoers:
    """The services that undo steps: a compensation in, the service's confirmation out."""

    def __init__(self, running: list[TestService]) -> None:
        self.running = running

    def answer(self, command: Event) -> Event:
        [t] = [t for t in self.running if t.service.handler_for(type(command)) is not None]
        [confirmation] = next(
            p.step.compensated for p in order_saga.placed if p.step.compensate is type(command)
        )
        t.send(command)
        return t.emitted(confirmation)[-1]

    def cancellation(self, order_id: str) -> OrderCancelled:
        [t] = [t for t in self.running if t.service is orders.svc]
        [cancelled] = [e for e in t.emitted(OrderCancelled) if e.order_id == order_id]
        return cancelled


@pytest.fixture(scope="module")
def undoers() -> Iterator[Undoers]:
    with ExitStack() as stack:
        services = (orders, inventory, payments, shipping)
        yield Undoers(
            [
                stack.enter_context(TestService(s.svc, idempotency=s.svc.idempotency))
                for s in services
            ]
        )


def status(run: Run) -> SagaStatus:
    """The saga's status now (a call, so a type checker does not keep an earlier answer)."""
    return run.status


def order(order_id: str, *events: Make) -> Run:
    """A saga that received and placed ``order_id``, then saw ``events`` in that order."""
    run = Run(order_saga, saga_id=order_id).send(b.received(order_id)).send(b.placed(order_id))
    for make in events:
        run.send(make(order_id))
    return run


def undo(run: Run, undoers: Undoers) -> list[type[Event]]:
    """Let the services answer each compensation; every command the tracker sent, in order.

    The tracker must send one at a time: the next only after the last one was confirmed.
    """
    while status(run) is SagaStatus.COMPENSATING:
        sent = len(run.emitted)
        assert sent > 0, "compensating, but no compensation was sent"
        run.send(undoers.answer(run.emitted[-1]))
        assert len(run.emitted) - sent == (status(run) is SagaStatus.COMPENSATING)
    return run.types()


def test_the_definition_is_valid_against_the_catalog() -> None:
    order_saga.validate(Catalog.load(ROOT / "schemas"))


def test_the_happy_path_completes_only_after_the_survey_with_every_wait_at_its_longest() -> None:
    order_id = b.new_order_id()
    run = order(order_id, *CHECKS)
    run.advance(APPROVAL_TIMEOUT.total_seconds() - 60).send(b.approved(order_id))
    run.advance(SHIPMENT_TIMEOUT.total_seconds() - 60).send(b.shipment_created(order_id))
    for make in (b.committed, b.captured, b.confirmation_sent):
        run.send(make(order_id))
    run.advance(FOLLOW_UP_DELAY.total_seconds() + 60)
    assert status(run) is SagaStatus.RUNNING  # a week on, waiting for the survey, not undone
    run.send(b.survey_sent(order_id))
    assert status(run) is SagaStatus.COMPLETED
    assert run.emitted == []


def test_an_invalid_order_has_nothing_to_compensate() -> None:
    order_id = b.new_order_id()
    run = Run(order_saga, saga_id=order_id).send(b.received(order_id)).send(b.invalid(order_id))
    assert status(run) is SagaStatus.COMPENSATED
    assert run.step("validate") is StepStatus.FAILED
    assert run.emitted == []


@pytest.mark.parametrize(
    ("events", "commands", "reason"),
    [
        pytest.param(
            [b.authorized, b.fraud_cleared, b.reservation_failed],
            [VoidAuthorization, CancelOrder],
            CancellationReason.OUT_OF_STOCK,
            id="out-of-stock",
        ),
        pytest.param(
            [b.reserved, b.fraud_cleared, b.declined],
            [ReleaseStock, CancelOrder],
            CancellationReason.PAYMENT_DECLINED,
            id="card-declined",
        ),
        pytest.param(
            [b.reserved, b.authorized, b.fraud_suspected],
            [VoidAuthorization, ReleaseStock, CancelOrder],
            CancellationReason.FRAUD_SUSPECTED,
            id="fraud-suspected",
        ),
        pytest.param(
            [*CHECKS, b.rejected],
            [VoidAuthorization, ReleaseStock, CancelOrder],
            CancellationReason.REJECTED,
            id="approval-rejected",
        ),
        pytest.param(
            [*APPROVED, b.shipment_failed, backup_failed],
            [BookBackupCarrier, VoidAuthorization, ReleaseStock, CancelOrder],
            CancellationReason.UNDELIVERABLE,
            id="both-carriers-refused",
        ),
        pytest.param(
            [*SHIPPED, b.captured, b.confirmation_sent, b.commit_failed],
            [RefundPayment, CancelShipment, VoidAuthorization, ReleaseStock, CancelOrder],
            CancellationReason.DAMAGED_STOCK,
            id="damaged-stock-at-pick",
        ),
    ],
)
def test_a_failure_undoes_the_completed_steps_last_first(
    undoers: Undoers,
    events: list[Make],
    commands: list[type[Event]],
    reason: CancellationReason,
) -> None:
    order_id = b.new_order_id()
    run = order(order_id, *events)
    assert status(run) is SagaStatus.COMPENSATING
    assert undo(run, undoers) == commands
    assert status(run) is SagaStatus.COMPENSATED
    undone = [p.step.name for p in order_saga.placed if p.step.compensate in commands]
    undone = [name for name in undone if run.step(name) is not StepStatus.FAILED]
    assert {run.step(name) for name in undone} == {StepStatus.COMPENSATED}
    assert undoers.cancellation(order_id).reason is reason


def test_compensations_carry_the_ids_and_amounts_of_what_they_undo(undoers: Undoers) -> None:
    order_id = b.new_order_id()
    run = order(order_id, *SHIPPED, b.captured, b.confirmation_sent, b.commit_failed)
    undo(run, undoers)
    refund, cancel_shipment, void, release, cancel = run.emitted
    assert isinstance(refund, RefundPayment)
    assert (refund.payment_id, refund.amount, refund.currency) == (
        b.payment_id(order_id),
        Decimal("19.98"),
        "EUR",
    )
    assert isinstance(cancel_shipment, CancelShipment)
    assert (cancel_shipment.shipment_id, cancel_shipment.carrier) == (
        b.shipment_id(order_id),
        "parcelco",
    )
    assert isinstance(void, VoidAuthorization)
    assert void.payment_id == b.payment_id(order_id)
    assert isinstance(release, ReleaseStock)
    assert release.reservation_id == b.reservation_id(order_id)
    assert isinstance(cancel, CancelOrder)
    for command in (refund, cancel_shipment, void, release, cancel):
        assert command.order_id == order_id
        assert "StockCommitFailed" in command.reason


def test_nobody_deciding_in_time_cancels_the_order_counted_from_when_the_checks_passed(
    undoers: Undoers,
) -> None:
    order_id = b.new_order_id()
    run = order(order_id, b.reserved, b.authorized)
    run.advance(3600).send(b.fraud_cleared(order_id))  # the approval is due from now on
    run.advance(APPROVAL_TIMEOUT.total_seconds() - 1)
    assert status(run) is SagaStatus.RUNNING
    run.advance(2)
    assert run.step("approval") is StepStatus.TIMED_OUT
    assert undo(run, undoers) == [VoidAuthorization, ReleaseStock, CancelOrder]
    assert status(run) is SagaStatus.COMPENSATED
    cancelled = undoers.cancellation(order_id)
    assert cancelled.reason is CancellationReason.OTHER
    assert cancelled.detail == "step 'approval' missed its deadline"


def test_a_carrier_that_never_answers_cancels_the_order_at_the_shipment_deadline(
    undoers: Undoers,
) -> None:
    order_id = b.new_order_id()
    run = order(order_id, *APPROVED).advance(SHIPMENT_TIMEOUT.total_seconds() + 1)
    assert run.step("create-shipment") is StepStatus.TIMED_OUT
    assert undo(run, undoers) == [VoidAuthorization, ReleaseStock, CancelOrder]


def test_out_of_stock_waits_for_the_card_processor_then_voids_before_cancelling(
    undoers: Undoers,
) -> None:
    order_id = b.new_order_id()
    run = order(order_id, b.reservation_failed, b.fraud_cleared)
    assert status(run) is SagaStatus.COMPENSATING
    assert run.types() == []  # the authorization is still out: nothing is undone before it
    run.send(b.authorized(order_id))  # the card processor answers while the order fails
    assert undo(run, undoers) == [VoidAuthorization, CancelOrder]  # reverse definition order
    assert status(run) is SagaStatus.COMPENSATED


def test_a_card_processor_that_never_answers_holds_the_cancellation_one_deadline(
    undoers: Undoers,
) -> None:
    order_id = b.new_order_id()
    run = order(order_id, b.reservation_failed, b.fraud_cleared)
    [authorize] = [p.step for p in order_saga.placed if p.step.name == "authorize-payment"]
    wait = authorize.compensation_deadline.total_seconds()  # no deadline of its own
    run.advance(wait - 1)
    assert run.types() == []
    run.advance(2)
    assert run.step("authorize-payment") is StepStatus.TIMED_OUT
    assert undo(run, undoers) == [CancelOrder]
    assert status(run) is SagaStatus.COMPENSATED


def test_a_damaged_pick_waits_for_the_capture_then_undoes_everything_last_first(
    undoers: Undoers,
) -> None:
    order_id = b.new_order_id()
    run = order(order_id, *SHIPPED, b.confirmation_sent, b.commit_failed)
    assert run.types() == []  # the capture is still out
    run.send(b.captured(order_id))  # payments captured while inventory found the damage
    assert undo(run, undoers) == EVERYTHING_UNDONE


def test_a_carrier_refusal_books_the_backup_carrier_and_the_order_goes_on(
    undoers: Undoers,
) -> None:
    order_id = b.new_order_id()
    run = order(order_id, *APPROVED, b.shipment_failed)
    assert status(run) is SagaStatus.RUNNING
    [command] = run.emitted
    assert isinstance(command, BookBackupCarrier)
    assert (command.order_id, command.carrier) == (order_id, "parcelco")
    [shipping_test] = [t for t in undoers.running if t.service is shipping.svc]
    shipping_test.send(b.placed(order_id, postal_code="00001"))
    shipping_test.send(command)  # the real shipping service, with the backup carrier
    created = shipping_test.emitted(ShipmentCreated)[-1]
    assert (created.order_id, created.carrier) == (order_id, "swiftship")
    run.send(created)
    assert run.step("create-shipment") is StepStatus.SUCCEEDED
    for make in (b.captured, b.confirmation_sent, b.committed, b.survey_sent):
        run.send(make(order_id))
    assert status(run) is SagaStatus.COMPLETED


def test_a_customer_cancel_waits_for_the_survey_in_flight_then_undoes_everything(
    undoers: Undoers,
) -> None:
    order_id = b.new_order_id()
    run = order(order_id, *ALL_BUT_SURVEY, cancel_requested)
    assert status(run) is SagaStatus.COMPENSATING
    assert run.types() == []  # the survey is still out: nothing is undone before it reports
    run.send(b.survey_sent(order_id))
    assert undo(run, undoers) == EVERYTHING_UNDONE
    assert status(run) is SagaStatus.COMPENSATED
    cancelled = undoers.cancellation(order_id)
    assert cancelled.reason is CancellationReason.CUSTOMER_REQUEST
    assert cancelled.detail == "cancelled by c-1: ordered by mistake"


def test_a_customer_cancel_after_completion_is_reported_not_applied() -> None:
    order_id = b.new_order_id()
    run = order(order_id, *ALL_BUT_SURVEY, b.survey_sent, cancel_requested)
    assert status(run) is SagaStatus.COMPLETED and run.emitted == []
    assert run.state is not None and run.state.cancel is not None
    assert (run.state.cancel.by, run.state.cancel.applied) == ("c-1", False)
