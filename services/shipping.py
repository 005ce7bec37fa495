"""The shipping service: books a shipment for approved orders, cancels it when the saga says so.

Run it with ``choreo run services.shipping``. The carrier's API fails now and then: a failed
booking is retried (twice in place, then after 2 s and 10 s on retry topics, so other orders
are not held up), and on the last attempt the service gives up with ``ShipmentFailed``. The
order saga then falls back to ``BookBackupCarrier``: the backup carrier books it, or refuses
with ``BackupShipmentFailed``, which the saga compensates. The postcodes it ships to and its
bookings are tables in PostgreSQL written through ``ctx.db`` (``PostgresIdempotency``): a
duplicate approval books nothing new, and a restart forgets nothing.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

import choreo
from services import providers
from services.events import (
    BackupShipmentFailed,
    BookBackupCarrier,
    CancelShipment,
    OrderApproved,
    OrderPlaced,
    ShipmentCancelled,
    ShipmentCreated,
    ShipmentFailed,
)
from services.settings import DSN

CARRIER_RETRY = choreo.RetryPolicy(max_attempts=2, initial_interval_s=0.2, delays_s=(2.0, 10.0))
LAST_ATTEMPT = CARRIER_RETRY.max_attempts + len(CARRIER_RETRY.delays_s)

DESTINATIONS = """CREATE TABLE IF NOT EXISTS shop_destinations (
    order_id TEXT PRIMARY KEY, postal_code TEXT NOT NULL, country TEXT NOT NULL)"""
SHIPMENTS = """CREATE TABLE IF NOT EXISTS shop_shipments (
    order_id TEXT PRIMARY KEY, shipment_id UUID NOT NULL, carrier TEXT NOT NULL,
    tracking_number TEXT NOT NULL)"""
"""Booked shipments not cancelled."""

TABLES = (DESTINATIONS, SHIPMENTS)

svc = choreo.Service("shipping", idempotency=choreo.PostgresIdempotency(DSN, setup=TABLES))


@dataclass(frozen=True)
class Booking:
    shipment_id: uuid.UUID
    carrier: str
    tracking_number: str


@svc.on(OrderPlaced)
def remember_destination(event: OrderPlaced, ctx: choreo.Context) -> None:
    """Shipping keeps its own copy of what it needs, so it never asks the orders service."""
    address = event.shipping_address
    ctx.db.execute(
        "INSERT INTO shop_destinations VALUES (%s, %s, %s) ON CONFLICT DO NOTHING",
        (event.order_id, address.postal_code, address.country),
    )


@svc.on(OrderApproved, retry=CARRIER_RETRY)
def create_shipment(event: OrderApproved, ctx: choreo.Context) -> None:
    postal_code = _destination(ctx, event.order_id)
    booking = _booking(ctx, event.order_id)  # a duplicate approval books nothing new
    if booking is None:
        try:
            carrier, tracking = providers.book_shipment(event.order_id, postal_code, ctx.attempt)
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
        booking = _book(ctx, event.order_id, carrier, tracking)
    ctx.emit(_created(event.order_id, booking))


@svc.on(BookBackupCarrier, retry=CARRIER_RETRY)
def book_backup_carrier(event: BookBackupCarrier, ctx: choreo.Context) -> None:
    """The order saga's fallback when the usual carrier refused: one try with the backup
    carrier, whose refusal (``BackupShipmentFailed``) is final."""
    postal_code = _destination(ctx, event.order_id)
    booking = _booking(ctx, event.order_id)
    if booking is None:
        try:
            carrier, tracking = providers.book_backup_shipment(event.order_id, postal_code)
        except providers.CarrierUnavailable as error:
            ctx.emit(
                BackupShipmentFailed(
                    order_id=event.order_id,
                    carrier=providers.BACKUP_CARRIER,
                    reason=str(error),
                    failed_at=datetime.now(UTC),
                )
            )
            return
        booking = _book(ctx, event.order_id, carrier, tracking)
    ctx.emit(_created(event.order_id, booking))


def _destination(ctx: choreo.Context, order_id: str) -> str:
    """The order's postcode, from shipping's own copy of the OrderPlaced address."""
    row = ctx.db.execute(
        "SELECT postal_code FROM shop_destinations WHERE order_id = %s", (order_id,)
    ).fetchone()
    if row is None:  # the OrderPlaced copy is late: a retry finds it
        raise LookupError(f"no address yet for order {order_id}")
    return str(row[0])


def _booking(ctx: choreo.Context, order_id: str) -> Booking | None:
    row = ctx.db.execute(
        "SELECT shipment_id, carrier, tracking_number FROM shop_shipments WHERE order_id = %s",
        (order_id,),
    ).fetchone()
    return None if row is None else Booking(*row)


def _book(ctx: choreo.Context, order_id: str, carrier: str, tracking: str) -> Booking:
    booking = Booking(uuid.uuid4(), carrier, tracking)
    ctx.db.execute(
        "INSERT INTO shop_shipments VALUES (%s, %s, %s, %s)",
        (order_id, booking.shipment_id, carrier, tracking),
    )
    return booking


def _created(order_id: str, booking: Booking) -> ShipmentCreated:
    return ShipmentCreated(
        order_id=order_id,
        shipment_id=booking.shipment_id,
        carrier=booking.carrier,
        tracking_number=booking.tracking_number,
        created_at=datetime.now(UTC),
    )


@svc.on(CancelShipment)
def cancel_shipment(event: CancelShipment, ctx: choreo.Context) -> None:
    ctx.db.execute("DELETE FROM shop_shipments WHERE order_id = %s", (event.order_id,))
    ctx.emit(
        ShipmentCancelled(
            order_id=event.order_id,
            shipment_id=event.shipment_id,
            cancelled_at=datetime.now(UTC),
        )
    )
