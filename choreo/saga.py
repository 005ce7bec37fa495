"""Sagas: define a choreographed transaction and run the tracker that compensates it.

A saga definition lists, per step, the events that say it succeeded, failed or was undone and
the command that undoes it. The services keep reacting to each other's events on their own;
the tracker (``choreo saga run MODULE:ATTR``) only watches, and on a failure or a missed
deadline emits the compensations of the completed steps in reverse order, one at a time, each
confirmed before the next. State lives in a compacted changelog topic and every decision is
written in one Kafka transaction with the input offsets, so a crash never loses or repeats a
compensation. See ``choreo._saga.engine`` for the exact rules.

    order_saga = Saga(
        "order", version=1, start=OrderPlaced, deadline=timedelta(minutes=5),
        steps=[
            Step("reserve-stock", success=[StockReserved], failure=[StockReservationFailed],
                 compensate=ReleaseStock, compensated=[StockReleased]),
            Step("charge", success=[PaymentAuthorized], failure=[PaymentDeclined],
                 compensate=RefundPayment, compensated=[PaymentRefunded]),
            Step("approval", success=[OrderApproved], failure=[OrderRejected],
                 when=lambda placed: placed.total > 1000, deadline=timedelta(hours=24),
                 needs_compensation=False),
        ],
        completed=[OrderCompleted],
        parked=SagaFailed,
    )

A saga can also be cancelled from outside (``abort=[OrderCancellationRequested]``), give a
long step a heartbeat (``progress=[ShipmentInTransit], heartbeat=timedelta(hours=12)``) and
try a fallback before compensating (``fallbacks=[Fallback(on=[ShipmentFailed],
command=ShipWithBackupCarrier, success=[ShipmentCreated], failure=[BackupShipmentFailed])]``).

Another saga can be one step: ``SubSaga(payment_saga)`` tracks its steps as
``payment/<step>``, compensated in reverse with the rest (see :class:`SubSaga`).
"""

from __future__ import annotations

from choreo._saga.definition import CompensationInput, Fallback, Parallel, Saga, Step, SubSaga
from choreo._saga.engine import Emit, Engine, Incoming, Outcome
from choreo._saga.state import SagaState, SagaStatus, StepStatus
from choreo._saga.tracker import SagaTracker

__all__ = [
    "CompensationInput",
    "Emit",
    "Engine",
    "Fallback",
    "Incoming",
    "Outcome",
    "Parallel",
    "Saga",
    "SagaState",
    "SagaStatus",
    "SagaTracker",
    "Step",
    "StepStatus",
    "SubSaga",
]
