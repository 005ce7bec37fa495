"""On the real stack: a saga that fails at its last step, compensated, is ONE trace in Jaeger.

Three services run in-process on choreo's runtime with tracing (orders, inventory, payments),
and the saga tracker runs in a thread with tracing; all export to the real Jaeger. Payments
declines, so the tracker asks inventory to release the stock and, once released, orders to
cancel. The trace Jaeger assembles must hold every hop with the right parents: each handling
span is a child of the span that emitted its record, and each compensation's handling span is
a child of the tracker's decision span that emitted it.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from builders import placed, received
from obs_kit import (
    JaegerTrace,
    Spans,
    confluent,
    eventually,
    isolated_catalog,
    jaeger_trace,
    publisher,
    reserve_stock,
    running,
)
from saga_kit import cancel_order, order_saga, release_stock, traced, traced_tracker

import choreo
from choreo.pytest_plugin import JaegerEndpoints
from services import orders
from services.events import (
    CancelOrder,
    OrderPlaced,
    OrderReceived,
    PaymentDeclined,
    ReleaseStock,
    StockReserved,
)

pytestmark = pytest.mark.stack

Names = Callable[[str], str]


def tags(span: dict[str, Any]) -> dict[str, Any]:
    found = span["tags_"]
    assert isinstance(found, dict)
    return found


def test_a_saga_compensated_after_its_last_step_failed_is_one_trace_in_jaeger(
    kafka: str, jaeger: JaegerEndpoints, unique_name: Names
) -> None:
    prefix = unique_name("obs")
    catalog = isolated_catalog(prefix, ("shop.orders", "shop.inventory", "shop.payments"))
    transport = confluent(kafka)
    web, orders_name, inventory_name, payments_name, tracker_service = (
        unique_name(n) for n in ("web", "orders", "inventory", "payments", "saga")
    )
    saga = order_saga(f"order-{uuid.uuid4().hex[:8]}")
    tracker_prefix = f"saga-tracker {saga.name}"

    spans = Spans(jaeger.otlp_http)

    def decided(event: str, decision: str | None = None) -> bool:
        """The tracker committed its decision on ``event`` (its span ends after the commit)."""
        return any(
            decision is None or (span.attributes or {}).get("choreo.saga.decision") == decision
            for span in spans.named(f"{tracker_prefix} {event}")
        )

    async def after_the_tracker_saw(event: str) -> None:
        """Across topics Kafka gives no order: without this the tracker may read the decline
        before the order (the engine copes, see tests/saga, but the trace has another shape).
        """
        await eventually(lambda: decided(event), 20.0, f"the tracker decided on {event}")

    placer = choreo.Service(orders_name)
    placer.on(OrderReceived)(orders.validate_order)
    placer.on(CancelOrder)(cancel_order)

    stock = choreo.Service(inventory_name)
    stock.on(ReleaseStock)(release_stock)

    @stock.on(OrderPlaced)
    async def reserve(event: OrderPlaced, ctx: choreo.Context) -> None:
        await after_the_tracker_saw("OrderPlaced")
        reserve_stock(event, ctx)

    payments = choreo.Service(payments_name)

    @payments.on(StockReserved)
    async def charge(event: StockReserved, ctx: choreo.Context) -> None:
        await after_the_tracker_saw("StockReserved")
        ctx.emit(
            PaymentDeclined(
                order_id=event.order_id,
                amount=Decimal("19.98"),
                currency="EUR",
                decline_code="insufficient_funds",
                declined_at=datetime.now(UTC),
            )
        )

    services = [placer, stock, payments]
    groups, instruments = traced(services, spans.provider, unique_name)
    tracker = traced_tracker(saga, kafka, catalog, spans.provider(tracker_service))
    stop = threading.Event()
    thread = threading.Thread(target=tracker.run, args=(stop,), daemon=True)
    order_id = unique_name("order")

    async def scenario() -> tuple[str, JaegerTrace, float]:
        async with running(services, catalog, transport, instruments, groups.get):
            thread.start()  # after the services created the topics, as the catalog says
            await eventually(lambda: len(tracker.store.partitions) == 3, 30.0, "tracker ready")
            began = time.monotonic()
            emitter = publisher(catalog, transport, web, spans.provider(web))
            await emitter.publish(received(order_id))
            saga_id = order_id  # no correlation id given: the start event's key is the saga's
            try:
                await eventually(
                    lambda: decided("OrderCancelled", "compensated"),
                    30.0,
                    "the tracker saw the order cancelled: saga compensated",
                )
            except AssertionError as error:
                seen = [
                    f"{s.name} {(s.attributes or {}).get('choreo.saga.decision', '')}"
                    for s in spans.finished()
                ]
                raise AssertionError(f"{error}; spans so far: {seen}") from None
            took = time.monotonic() - began
        stop.set()
        thread.join(20)
        assert not thread.is_alive(), "the tracker did not stop"
        spans.flush()
        return saga_id, await jaeger_trace(jaeger.query, web, spans=11), took

    try:
        saga_id, found, took = asyncio.run(scenario())
    finally:
        stop.set()
        spans.shutdown()

    names = sorted(s["operationName"] for s in found.spans)
    assert len(found.spans) == 11, names
    assert {s["service"] for s in found.spans} == {
        web,
        orders_name,
        inventory_name,
        payments_name,
        tracker_service,
    }

    root = found.one(f"{web} publish OrderReceived")
    placing = found.one(f"{orders_name} handle OrderReceived")
    reserving = found.one(f"{inventory_name} handle OrderPlaced")
    charging = found.one(f"{payments_name} handle StockReserved")
    t_placed = found.one(f"{tracker_prefix} OrderPlaced")
    t_reserved = found.one(f"{tracker_prefix} StockReserved")
    t_declined = found.one(f"{tracker_prefix} PaymentDeclined")
    releasing = found.one(f"{inventory_name} handle ReleaseStock")
    t_released = found.one(f"{tracker_prefix} StockReleased")
    cancelling = found.one(f"{orders_name} handle CancelOrder")
    t_cancelled = found.one(f"{tracker_prefix} OrderCancelled")

    # Each span's parent is the span that emitted the record it consumed.
    links = {
        "root": (root, None),
        "orders handle OrderReceived": (placing, root),
        "inventory handle OrderPlaced": (reserving, placing),
        "tracker OrderPlaced": (t_placed, placing),
        "payments handle StockReserved": (charging, reserving),
        "tracker StockReserved": (t_reserved, reserving),
        "tracker PaymentDeclined": (t_declined, charging),
        "inventory handle ReleaseStock": (releasing, t_declined),  # the compensation
        "tracker StockReleased": (t_released, releasing),
        "orders handle CancelOrder": (cancelling, t_released),  # the next compensation
        "tracker OrderCancelled": (t_cancelled, cancelling),
    }
    for what, (span, parent) in links.items():
        expected = None if parent is None else parent["spanID"]
        assert span["parent"] == expected, f"{what}: parent {span['parent']} != {expected}"

    tracker_spans = [t_placed, t_reserved, t_declined, t_released, t_cancelled]
    assert all(s["service"] == tracker_service for s in tracker_spans)
    expected_steps = ["order", "reserve-stock", "charge", "reserve-stock", "order"]
    expected_decisions = ["wait", "wait", "compensate", "compensate", "compensated"]
    topics = [f"{prefix}.shop.{t}" for t in ("orders", "inventory", "payments", "inventory")]
    topics.append(f"{prefix}.shop.orders")
    for span, step, decision, topic in zip(
        tracker_spans, expected_steps, expected_decisions, topics, strict=True
    ):
        t = tags(span)
        where = span["operationName"]
        assert t["span.kind"] == "consumer", where
        assert t["choreo.saga.id"] == saga_id == t["choreo.correlation_id"], where
        assert t["choreo.saga.name"] == saga.name, where
        assert t["choreo.saga.step"] == step, where
        assert t["choreo.saga.decision"] == decision, where
        assert t["messaging.system"] == "kafka", where
        assert t["messaging.destination.name"] == topic, where
        assert t["messaging.consumer.group.name"] == f"choreo-saga-{saga.name}", where
        assert t["messaging.kafka.message.key"] == order_id, where
        assert isinstance(t["messaging.kafka.offset"], int), where
        assert t["messaging.message.id"], where
    assert tags(t_cancelled)["choreo.saga.status"] == "compensated"

    # The decision spans say what they emitted, as span events.
    def emitted(span: dict[str, Any]) -> list[str]:
        fields = [{f["key"]: f["value"] for f in log["fields"]} for log in span["logs"]]
        return [f["choreo.event_type"] for f in fields if f.get("event") == "choreo.saga.emit"]

    assert emitted(t_declined) == ["shop.inventory.ReleaseStock"]
    assert emitted(t_released) == ["shop.orders.CancelOrder"]
    assert emitted(t_placed) == emitted(t_cancelled) == []
    print(
        f"\none trace, {len(found.spans)} spans ({len(tracker_spans)} tracker), "
        f"{len(links)} parent links checked; published to compensated in {took:.2f}s"
    )


def test_a_missed_deadline_compensates_in_the_start_events_trace(
    kafka: str, jaeger: JaegerEndpoints, unique_name: Names
) -> None:
    """No record fires a deadline: its span is a child of the start event's stored context."""
    prefix = unique_name("obs")
    catalog = isolated_catalog(prefix, ("shop.orders", "shop.inventory", "shop.payments"))
    transport = confluent(kafka)
    web, orders_name, tracker_service = (unique_name(n) for n in ("web", "orders", "saga"))
    saga = order_saga(f"order-{uuid.uuid4().hex[:8]}", stock_deadline=timedelta(seconds=1))
    tracker_prefix = f"saga-tracker {saga.name}"
    spans = Spans(jaeger.otlp_http)

    placer = choreo.Service(orders_name)  # nobody reserves stock: the step's deadline passes
    placer.on(CancelOrder)(cancel_order)
    groups, instruments = traced([placer], spans.provider, unique_name)
    tracker = traced_tracker(saga, kafka, catalog, spans.provider(tracker_service))
    stop = threading.Event()
    thread = threading.Thread(target=tracker.run, args=(stop,), daemon=True)
    order_id = unique_name("order")

    async def scenario() -> JaegerTrace:
        async with running([placer], catalog, transport, instruments, groups.get):
            thread.start()
            await eventually(lambda: len(tracker.store.partitions) == 3, 30.0, "tracker ready")
            await publisher(catalog, transport, web, spans.provider(web)).publish(placed(order_id))
            await eventually(
                lambda: bool(spans.named(f"{tracker_prefix} OrderCancelled")),
                20.0,
                "the tracker saw the order cancelled",
            )
        stop.set()
        thread.join(20)
        assert not thread.is_alive(), "the tracker did not stop"
        spans.flush()
        return await jaeger_trace(jaeger.query, web, spans=5)

    try:
        found = asyncio.run(scenario())
    finally:
        stop.set()
        spans.shutdown()

    assert len(found.spans) == 5, sorted(s["operationName"] for s in found.spans)
    root = found.one(f"{web} publish OrderPlaced")
    started = found.one(f"{tracker_prefix} OrderPlaced")
    deadline = found.one(f"{tracker_prefix} deadline")
    cancelling = found.one(f"{orders_name} handle CancelOrder")
    confirmed = found.one(f"{tracker_prefix} OrderCancelled")
    assert root["parent"] is None
    assert started["parent"] == root["spanID"]
    assert deadline["parent"] == root["spanID"]  # the start event's context, from the state
    assert cancelling["parent"] == deadline["spanID"]
    assert confirmed["parent"] == cancelling["spanID"]
    assert tags(deadline)["span.kind"] == "internal"
    assert tags(deadline)["choreo.saga.decision"] == "compensate"
    assert tags(deadline)["choreo.saga.step"] == "order"  # the step it undoes
    assert tags(deadline)["choreo.saga.action"] == "emitted shop.orders.CancelOrder"
    assert tags(started)["choreo.saga.decision"] == "wait"
    assert tags(confirmed)["choreo.saga.decision"] == "compensated"
