"""Scheduled delivery (``ctx.emit(event, at=...)``): a durable timer written to Kafka at once."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from subprocess import Popen

import pytest
from builders import new_order_id, placed, received
from runtime_kit import fast_failover, publish, read_topic

import choreo
from choreo import _headers
from choreo._schemas import Catalog, Codec
from choreo.testing import TestService
from services.events import (
    CancellationReason,
    CancellationSent,
    ConfirmationSent,
    OrderCancelled,
    OrderPlaced,
    ShipmentCreated,
    SurveyDue,
    SurveySent,
)

DELAY_S = 4


def _shipped(order_id: str) -> ShipmentCreated:
    return ShipmentCreated(
        order_id=order_id,
        shipment_id=uuid.uuid4(),
        carrier="parcelco",
        tracking_number="PC1",
        created_at=datetime.now(UTC),
    )


@pytest.mark.stack
def test_a_scheduled_survey_survives_a_kill_and_arrives_after_its_time(
    kafka: str,
    postgres: str,
    isolated_schemas: Path,
    tmp_path: Path,
    run_service: Callable[..., Popen[str]],
) -> None:
    kept, cancelled_id = new_order_id("kept"), new_order_id("cancelled")  # the DB outlives a run
    catalog = Catalog.load(isolated_schemas)
    codec = Codec(catalog)
    topic = {e: catalog.topic_of(e.event_type).name for e in (SurveyDue, SurveySent)}
    env = {"SHOP_FOLLOW_UP_DELAY_S": str(DELAY_S), "SHOP_DSN": postgres}
    config = fast_failover(tmp_path)  # the restarted member gets the partitions at once
    service = run_service("services.notifications", isolated_schemas, config, **env)
    cancelled = OrderCancelled(
        order_id=cancelled_id,
        reason=CancellationReason.OTHER,
        detail="picking failed",
        cancelled_at=datetime.now(UTC),
    )
    events = [received(kept), received(cancelled_id), _shipped(kept), _shipped(cancelled_id)]
    asyncio.run(publish(kafka, isolated_schemas, [*events, cancelled]))
    due = [codec.decode(v, SurveyDue) for v, _ in read_topic(kafka, topic[SurveyDue], 2)]
    assert sorted(d.order_id for d in due) == sorted([kept, cancelled_id])
    service.kill()  # the timers are in Kafka now, not in the process
    service.wait()
    assert datetime.now(UTC) < min(d.due_at for d in due), "killed after the due time"
    run_service("services.notifications", isolated_schemas, config, **env)

    # Both surveys are due at about the same time: once one is out, the other would be too.
    read_topic(kafka, topic[SurveySent], expected=4, timeout_s=60)
    notifications = read_topic(kafka, topic[SurveySent], expected=5, timeout_s=3)
    kinds = [dict(headers)[_headers.TYPE].decode() for _, headers in notifications]
    assert sorted(kinds) == sorted(
        [ConfirmationSent.event_type] * 2 + [CancellationSent.event_type, SurveySent.event_type]
    )
    [sent] = [
        codec.decode(v, SurveySent)
        for v, h in notifications
        if dict(h)[_headers.TYPE] == SurveySent.event_type.encode()
    ]
    [kept_due] = [d for d in due if d.order_id == kept]
    assert sent.order_id == kept
    assert sent.sent_at >= kept_due.due_at - timedelta(milliseconds=1)


early = choreo.Service("early")


@early.on(OrderPlaced)
def emit_later(event: OrderPlaced, ctx: choreo.Context) -> None:
    ctx.emit(event, at=datetime.now(UTC) + timedelta(minutes=1))


def test_a_delivery_time_on_a_topic_that_is_not_scheduled_is_refused_naming_the_fix() -> None:
    with pytest.raises(Exception, match="scheduled = true"), TestService(early) as t:
        t.send(placed("o-1"))


batched = choreo.Service("survey-batches")
BATCHES: list[list[str]] = []


@batched.on_batch(SurveyDue, max_size=100, max_wait_s=0.05)
def send_surveys(events: list[SurveyDue], ctx: choreo.BatchContext) -> None:
    BATCHES.append([e.order_id for e in events])


def test_a_batch_of_due_records_is_handled_while_the_next_record_waits_for_its_time() -> None:
    """The partition stops at a record due tomorrow; the batch before it must not stop too."""
    BATCHES.clear()
    with TestService(batched) as t:
        due, now = t.now() - timedelta(seconds=1), t.now()
        for order_id, at in (("a", due), ("b", due), ("later", now + timedelta(days=1))):
            survey = SurveyDue(order_id=order_id, customer_id="c", due_at=at)
            t.send(survey, key="k", at=at, settle=False)
        t.settle()
        assert BATCHES == [["a", "b"]]
        t.advance(timedelta(days=1))
        assert BATCHES == [["a", "b"], ["later"]]
