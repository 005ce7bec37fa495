"""The shipping service: books a shipment for approved orders, cancels it when the saga says so.

Run it with ``choreo run services.shipping``. The carrier's API fails now and then: a failed
booking is retried (twice in place, then after 2 s and 10 s on retry topics, so other orders
are not held up), and on the last attempt the service gives up with ``ShipmentFailed``, which
the saga compensates. Addresses and bookings live in process memory to keep the example short.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

import choreo
from services import providers
from services.events import (
    Address,
    CancelShipment,
    OrderApproved,
    OrderPlaced,
    ShipmentCancelled,
    ShipmentCreated,
    ShipmentFailed,
)

CARRIER_RETRY = choreo.RetryPolicy(max_attempts=2, initial_interval_s=0.2, delays_s=(2.0, 10.0))
LAST_ATTEMPT = CARRIER_RETRY.max_attempts + len(CARRIER_RETRY.delays_s)

svc = choreo.Service("shipping")


@dataclass(frozen=True)
class Booking:
    shipment_id: uuid.UUID
    carrier: str
    tracking_number: str


addresses: dict[str, Address] = {}
bookings: dict[str, Booking] = {}


@svc.on(OrderPlaced)
def remember_address(event: OrderPlaced, ctx: choreo.Context) -> None:
    """Shipping keeps its own copy of what it needs, so it never asks the orders service."""
    addresses[event.order_id] = event.shipping_address


@svc.on(OrderApproved, retry=CARRIER_RETRY)
def create_shipment(event: OrderApproved, ctx: choreo.Context) -> None:
    address = addresses.get(event.order_id)
    if address is None:  # the OrderPlaced copy is late: a retry finds it
        raise LookupError(f"no address yet for order {event.order_id}")
    booking = bookings.get(event.order_id)  # a duplicate approval books nothing new
    if booking is None:
        try:
            carrier, tracking = providers.book_shipment(
                event.order_id, address.postal_code, ctx.attempt
            )
        except providers.CarrierUnavailable as error:
            if ctx.attempt < LAST_ATTEMPT:
                raise
            ctx.emit(
                ShipmentFailed(
                    order_id=event.order_id,
                    carrier="parcelco",
                    reason=str(error),
                    attempts=ctx.attempt,
                    failed_at=datetime.now(UTC),
                )
            )
            return
        booking = bookings[event.order_id] = Booking(uuid.uuid4(), carrier, tracking)
    ctx.emit(
        ShipmentCreated(
            order_id=event.order_id,
            shipment_id=booking.shipment_id,
            carrier=booking.carrier,
            tracking_number=booking.tracking_number,
            created_at=datetime.now(UTC),
        )
    )


@svc.on(CancelShipment)
def cancel_shipment(event: CancelShipment, ctx: choreo.Context) -> None:
    bookings.pop(event.order_id, None)
    ctx.emit(
        ShipmentCancelled(
            order_id=event.order_id,
            shipment_id=event.shipment_id,
            cancelled_at=datetime.now(UTC),
        )
    )
