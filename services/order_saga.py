"""The order saga: every step of an order, what undoes it, and how long each may take.

Run the tracker with ``choreo saga run services.order_saga``. The services never call each
other or the tracker; they react to events. The tracker watches those events and, when a step
fails or a deadline passes, emits the compensations of the completed steps, last first:
refund the payment, cancel the shipment, void the authorization, release the stock, cancel the
order. Two controls go beyond that: the customer's ``OrderCancellationRequested`` aborts the
order (undone like a failure; reported, not applied, once the order completed), and a
shipment the usual carrier refused is first offered to the backup carrier
(``BookBackupCarrier``) before the order is undone. ``choreo saga show ORDER_ID`` prints one
order's timeline.
"""

from __future__ import annotations

from choreo.saga import Fallback, Parallel, Saga, Step
from services.events import (
    AuthorizationVoided,
    BackupShipmentFailed,
    BookBackupCarrier,
    CancelOrder,
    CancelShipment,
    ConfirmationSent,
    FraudCleared,
    FraudSuspected,
    OrderApproved,
    OrderCancellationRequested,
    OrderCancelled,
    OrderInvalid,
    OrderPlaced,
    OrderReceived,
    OrderRejected,
    PaymentAuthorized,
    PaymentCaptured,
    PaymentDeclined,
    PaymentRefunded,
    RefundPayment,
    ReleaseStock,
    SagaFailed,
    ShipmentCancelled,
    ShipmentCreated,
    ShipmentFailed,
    StockCommitFailed,
    StockCommitted,
    StockReleased,
    StockReservationFailed,
    StockReserved,
    SurveySent,
    VoidAuthorization,
)
from services.settings import APPROVAL_TIMEOUT, ORDER_TIMEOUT, SHIPMENT_TIMEOUT

order_saga = Saga(
    "order",
    version=1,
    start=OrderReceived,
    deadline=ORDER_TIMEOUT,
    steps=[
        Step(
            "validate",
            success=[OrderPlaced],
            failure=[OrderInvalid],
            compensate=CancelOrder,
            compensated=[OrderCancelled],
        ),
        Parallel(
            [
                Step(
                    "reserve-stock",
                    success=[StockReserved],
                    failure=[StockReservationFailed],
                    compensate=ReleaseStock,
                    compensated=[StockReleased],
                ),
                Step(
                    "authorize-payment",
                    success=[PaymentAuthorized],
                    failure=[PaymentDeclined],
                    compensate=VoidAuthorization,
                    compensated=[AuthorizationVoided],
                ),
                Step(
                    "fraud-check",
                    success=[FraudCleared],
                    failure=[FraudSuspected],
                    needs_compensation=False,
                ),
            ]
        ),
        # Normal orders are approved by the approvals service at once; high-value ones wait
        # for a manager, and nobody deciding in time cancels the order.
        Step(
            "approval",
            success=[OrderApproved],
            failure=[OrderRejected],
            deadline=APPROVAL_TIMEOUT,
            needs_compensation=False,
        ),
        Step(
            "create-shipment",
            success=[ShipmentCreated],
            failure=[ShipmentFailed],
            compensate=CancelShipment,
            compensated=[ShipmentCancelled],
            deadline=SHIPMENT_TIMEOUT,
            fallbacks=[
                Fallback(
                    on=[ShipmentFailed],
                    command=BookBackupCarrier,
                    success=[ShipmentCreated],
                    failure=[BackupShipmentFailed],
                )
            ],
        ),
        Parallel(
            [
                Step(
                    "commit-stock",
                    success=[StockCommitted],
                    failure=[StockCommitFailed],
                    needs_compensation=False,  # releasing the reservation puts picked units back
                ),
                Step(
                    "capture-payment",
                    success=[PaymentCaptured],
                    compensate=RefundPayment,
                    compensated=[PaymentRefunded],
                ),
                Step("confirm", success=[ConfirmationSent], needs_compensation=False),
            ]
        ),
        Step("follow-up", success=[SurveySent], needs_compensation=False),
    ],
    parked=SagaFailed,
    abort=[OrderCancellationRequested],
)
