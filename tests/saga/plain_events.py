"""Events with no fields but the order id, shared by the engine-only tests of payloads and
compensations (no catalog: the engine needs only their models)."""

from __future__ import annotations

from choreo import Event


class Refunded(Event):
    event_type = "test.plain.Refunded"
    order_id: str


class Shipped(Event):
    event_type = "test.plain.Shipped"
    order_id: str


class Lost(Event):
    event_type = "test.plain.Lost"
    order_id: str
