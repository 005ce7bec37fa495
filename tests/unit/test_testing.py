"""TestService's own promises: held records settle where they wait, and the test moves time."""

from __future__ import annotations

import asyncio
import itertools
from datetime import UTC, datetime, timedelta

import pytest
from builders import placed

import choreo
from choreo._transport.base import TopicPartition
from choreo._transport.memory import MemoryTransport, partition_for_key
from choreo.testing import TestService
from services.events import OrderPlaced, SurveyDue, SurveySent

WEEK = timedelta(days=7)


def _followups() -> choreo.Service:
    """Schedules a survey a week after each order and sends it when it is due."""
    svc = choreo.Service("followups")

    @svc.on(OrderPlaced)
    def schedule(event: OrderPlaced, ctx: choreo.Context) -> None:
        due = datetime.now(UTC) + WEEK
        ctx.emit(SurveyDue(order_id=event.order_id, customer_id="c-1", due_at=due), at=due)

    @svc.on(SurveyDue)
    def send(event: SurveyDue, ctx: choreo.Context) -> None:
        ctx.emit(SurveySent(order_id=event.order_id, customer_id="c-1", sent_at=datetime.now(UTC)))

    return svc


def _same_partition_as(order_id: str) -> str:
    """Another order id whose records land on the same ``shop.followups`` partition."""
    wanted = partition_for_key(order_id.encode(), 3)
    return next(
        other
        for other in (f"o-{i}" for i in itertools.count())
        if other != order_id and partition_for_key(other.encode(), 3) == wanted
    )


def test_a_service_consuming_its_own_scheduled_topic_settles_and_sends_a_week_later() -> None:
    with TestService(_followups()) as t:
        t.send(placed("o-1"))
        t.send(placed("o-2"))  # settles although o-1's survey is held in front of it
        assert [d.order_id for d in t.emitted(SurveyDue)] == ["o-1", "o-2"]
        t.advance(WEEK - timedelta(hours=1))
        assert t.emitted(SurveySent) == []
        t.advance(timedelta(hours=1))
        sent = t.emitted(SurveySent)
        now = t.now()
    assert sorted(s.order_id for s in sent) == ["o-1", "o-2"]
    assert max(d.due_at for d in t.emitted(SurveyDue)) <= now


def test_a_record_behind_a_held_one_waits_for_it_in_order() -> None:
    later, behind = "o-late", _same_partition_as("o-late")
    with TestService(_followups()) as t:
        t.send(SurveyDue(order_id=later, customer_id="c-1", due_at=t.now()), at=t.now() + WEEK)
        t.send(SurveyDue(order_id=behind, customer_id="c-1", due_at=t.now()))
        assert t.emitted(SurveySent) == []
        t.advance(WEEK)
        assert [s.order_id for s in t.emitted(SurveySent)] == [later, behind]


def test_with_key_lanes_other_keys_pass_a_held_record_and_settle_waits_for_them() -> None:
    later, behind = "o-late", _same_partition_as("o-late")
    config = choreo.ServiceConfig(key_concurrency=2)
    with TestService(_followups(), config=config) as t:
        t.send(SurveyDue(order_id=later, customer_id="c-1", due_at=t.now()), at=t.now() + WEEK)
        t.send(SurveyDue(order_id=behind, customer_id="c-1", due_at=t.now()))
        assert [s.order_id for s in t.emitted(SurveySent)] == [behind]
        t.advance(WEEK)
        assert [s.order_id for s in t.emitted(SurveySent)] == [behind, later]


def test_time_only_moves_forward() -> None:
    with TestService(_followups()) as t, pytest.raises(ValueError, match="zero or more"):
        t.advance(timedelta(seconds=-1))


class _Listener:
    async def on_assigned(self, partitions: list[TopicPartition]) -> None:
        pass

    async def on_revoked(self, partitions: list[TopicPartition]) -> None:
        pass


def test_ending_a_groups_polls_returns_a_pending_poll_at_once_and_empty() -> None:
    async def scenario() -> list[object]:
        transport = MemoryTransport()
        consumer = transport.consumer("g", "c")
        await consumer.subscribe(["t"], _Listener())
        polling = asyncio.create_task(consumer.poll(10, timeout_s=60.0))
        await asyncio.sleep(0)
        transport.end_polls("g")
        return list(await asyncio.wait_for(polling, timeout=5.0))

    assert asyncio.run(scenario()) == []
