"""The saga state machine without Kafka: each rule of ``choreo._saga.engine`` on its own."""

from __future__ import annotations

import sys
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

import saga_defs as d
from engine_run import Run

from choreo import Event, TopologyError
from choreo._schemas import Catalog
from choreo.saga import SagaState, SagaStatus, Step, StepStatus
from services.events import CancelOrder, RefundPayment, ReleaseStock, SagaFailed

ROOT = Path(__file__).resolve().parents[2]


def test_definitions_are_valid_against_the_catalog() -> None:
    catalog = Catalog.load(ROOT / "schemas")
    d.order_saga.validate(catalog)
    d.parallel_saga.validate(catalog)


def test_a_step_without_compensation_is_an_error_naming_saga_and_step() -> None:
    saga = replace(d.order_saga, steps=[replace(d.charge_step, compensate=None)])
    with pytest.raises(TopologyError, match="saga 'order' v1 step 'charge' has no compensation"):
        saga.validate(Catalog.load(ROOT / "schemas"))


def test_an_event_type_outside_the_catalog_is_an_error() -> None:
    class Ghost(Event):
        event_type = "shop.ghosts.Boo"
        order_id: str

    saga = replace(d.order_saga, steps=[replace(d.charge_step, failure=[Ghost])])
    with pytest.raises(TopologyError, match=r"step 'charge': failure event shop.ghosts.Boo is not"):
        saga.validate(Catalog.load(ROOT / "schemas"))


def test_a_compensation_that_cannot_be_filled_needs_a_builder() -> None:
    saga = replace(d.order_saga, steps=[replace(d.stock_step, compensate=RefundPayment)])
    with pytest.raises(TopologyError, match="no source for required field 'payment_id'"):
        saga.validate(Catalog.load(ROOT / "schemas"))


def test_happy_path_completes_and_emits_nothing() -> None:
    run = Run().send(d.placed("o-1")).send(d.reserved("o-1")).send(d.authorized("o-1"))
    assert run.status is SagaStatus.RUNNING  # the completion event is still missing
    run.send(d.completed("o-1"))
    assert run.status is SagaStatus.COMPLETED
    assert run.emitted == []
    assert run.step("approval") is StepStatus.SKIPPED
    # The only timer left is the one that forgets the finished saga after its retention.
    assert run.state is not None
    assert run.state.wake_at == run.now + d.order_saga.retention.total_seconds()


def test_each_event_id_is_remembered_once() -> None:
    run = Run().send(d.placed("o-1"), "e-start").send(d.placed("o-1"), "e-start")
    run.send(d.reserved("o-1"), "e-2").send(d.reserved("o-1"), "e-2")
    assert run.state is not None
    assert run.state.seen_ids == ["e-start", "e-2"]


@pytest.mark.parametrize(
    ("events", "expected"),
    [
        ([d.reservation_failed], [CancelOrder]),
        ([d.reserved, d.declined], [ReleaseStock, CancelOrder]),
    ],
)
def test_failure_compensates_in_reverse_one_at_a_time(
    events: list[object], expected: list[type[Event]]
) -> None:
    run = Run().send(d.placed("o-1"))
    for make in events:
        run.send(make("o-1"))  # type: ignore[operator]
    assert run.status is SagaStatus.COMPENSATING
    confirm = {ReleaseStock: d.released, CancelOrder: d.cancelled}
    for i, kind in enumerate(expected):
        assert run.types() == expected[: i + 1]  # the next one waits for this confirmation
        run.send(confirm[kind]("o-1"))
    assert run.types() == expected
    assert run.status is SagaStatus.COMPENSATED


def test_compensation_fields_headers_and_reason() -> None:
    run = Run().send(d.placed("o-1"), event_id="start", traceparent="00-abc-def-01")
    run.send(d.reserved("o-1"))
    run.send(d.declined("o-1"), event_id="bad")  # charge failed, so nothing to refund
    [emit] = run.emits
    release = emit.event  # type: ignore[attr-defined]
    assert isinstance(release, ReleaseStock)
    assert release.reservation_id == d.reserved("o-1").reservation_id
    assert "step 'charge' failed" in release.reason
    assert emit.causation_id == "bad"  # type: ignore[attr-defined]
    assert emit.correlation_id == "o-1"  # type: ignore[attr-defined]
    assert emit.trace == {"traceparent": "00-abc-def-01"}  # type: ignore[attr-defined]


def test_approval_rejected_compensates_everything() -> None:
    run = Run().send(d.placed("o-1", total="5000")).send(d.reserved("o-1"))
    run.send(d.authorized("o-1")).send(d.completed("o-1"))
    assert run.status is SagaStatus.RUNNING  # waiting for a person
    run.send(d.rejected("o-1"))
    assert run.types() == [RefundPayment]
    run.send(d.refunded("o-1")).send(d.released("o-1")).send(d.cancelled("o-1"))
    assert run.types() == [RefundPayment, ReleaseStock, CancelOrder]
    assert run.status is SagaStatus.COMPENSATED


def test_approval_granted_completes() -> None:
    run = Run().send(d.placed("o-1", total="5000")).send(d.reserved("o-1"))
    run.send(d.authorized("o-1")).send(d.approved("o-1")).send(d.completed("o-1"))
    assert run.status is SagaStatus.COMPLETED


def test_approval_deadline_counts_from_when_the_step_is_due() -> None:
    run = Run().send(d.placed("o-1", total="5000")).send(d.reserved("o-1"))
    run.advance(10)  # charge has no deadline; approval is not due yet
    assert run.status is SagaStatus.RUNNING
    run.send(d.authorized("o-1")).advance(2.9)
    assert run.status is SagaStatus.RUNNING
    run.advance(0.2)
    assert run.step("approval") is StepStatus.TIMED_OUT
    assert run.types() == [RefundPayment]


def test_step_deadline_then_late_success_is_compensated_too() -> None:
    run = Run().send(d.placed("o-1")).advance(4.1)
    assert run.types() == [CancelOrder]
    run.send(d.reserved("o-1"))  # arrives while the cancellation is in flight
    run.send(d.cancelled("o-1"))
    assert run.types() == [CancelOrder]  # the charge step it started may still report
    run.advance(1.6)
    assert run.types() == [CancelOrder, ReleaseStock]
    run.send(d.released("o-1"))
    assert run.status is SagaStatus.COMPENSATED


def test_failure_read_before_an_earlier_success_waits_for_it() -> None:
    run = Run().send(d.placed("o-1")).send(d.declined("o-1"))
    assert run.status is SagaStatus.COMPENSATING
    assert run.types() == []  # reserve-stock was activated: it may still report
    run.send(d.reserved("o-1"))  # the failure overtook the success, on another topic
    assert run.types() == [ReleaseStock]
    run.send(d.released("o-1"))
    assert run.types() == [ReleaseStock, CancelOrder]
    run.send(d.cancelled("o-1"))
    assert run.status is SagaStatus.COMPENSATED


def test_success_after_compensated_reopens_the_saga() -> None:
    run = Run().send(d.placed("o-1")).send(d.declined("o-1")).advance(4.1)
    assert run.step("reserve-stock") is StepStatus.TIMED_OUT  # no longer waited for
    run.send(d.cancelled("o-1"))
    assert run.status is SagaStatus.COMPENSATED
    run.send(d.reserved("o-1"))  # truly late: undone after all
    assert run.status is SagaStatus.COMPENSATING
    assert run.types() == [CancelOrder, ReleaseStock]
    run.send(d.released("o-1"))
    assert run.status is SagaStatus.COMPENSATED


def test_saga_deadline() -> None:
    run = Run().send(d.placed("o-1")).send(d.reserved("o-1")).advance(30.1)
    assert run.types() == []  # charge was activated and may still report: wait for it
    run.advance(1.6)  # charge has no deadline: one compensation deadline
    assert run.step("charge") is StepStatus.TIMED_OUT
    assert run.types() == [ReleaseStock]
    assert run.state is not None and run.state.reason == "the saga's deadline passed"


def test_duplicates_are_ignored() -> None:
    run = Run().send(d.placed("o-1"), event_id="p").send(d.reservation_failed("o-1"), event_id="f")
    before = run.state
    run.send(d.reservation_failed("o-1"), event_id="f")
    assert run.state is before
    run.send(d.placed("o-1"), event_id="p2")  # the same fact again under a new id
    assert run.types() == [CancelOrder]


def test_retries_then_parks_with_saga_failed() -> None:
    run = Run().send(d.placed("o-1")).send(d.reservation_failed("o-1"))
    run.advance(1.6)
    assert run.types() == [CancelOrder, CancelOrder]
    # The re-send has the first send's ce_id: an idempotent service drops it.
    assert run.emits[0].event_id == run.emits[1].event_id  # type: ignore[attr-defined]
    run.advance(1.6)
    assert run.status is SagaStatus.FAILED
    assert run.types() == [CancelOrder, CancelOrder, SagaFailed]
    parked = run.emitted[-1]
    assert isinstance(parked, SagaFailed) and parked.step == "order" and parked.saga_id == "o-1"
    assert any("parked" in line and "choreo saga show o-1" in line for line in run.logs)
    run.send(d.cancelled("o-1"))  # a person fixed it: the tracker carries on
    assert run.status is SagaStatus.COMPENSATED


def test_events_before_the_start_are_buffered_then_replayed() -> None:
    run = Run().send(d.reserved("o-1")).send(d.declined("o-1"))
    assert run.status is SagaStatus.WAITING and run.emitted == []
    run.send(d.placed("o-1"))
    assert run.types() == [ReleaseStock]


def test_orphans_are_dropped_after_the_ttl() -> None:
    run = Run().send(d.reserved("o-1")).advance(61)
    assert run.state is None
    assert any("never arrived" in line for line in run.logs)


def test_parallel_member_failure_compensates_the_succeeded_member() -> None:
    run = Run(d.parallel_saga).send(d.placed("o-1")).send(d.authorized("o-1"))
    run.send(d.reservation_failed("o-1"))
    assert run.types() == [RefundPayment]
    run.send(d.refunded("o-1")).send(d.cancelled("o-1"))
    assert run.types() == [RefundPayment, CancelOrder]
    assert run.status is SagaStatus.COMPENSATED


def test_each_saga_finishes_under_the_version_it_started_with() -> None:
    engine_v1 = Run(d.order_saga).send(d.placed("o-1"))
    run = Run(d.order_saga, d.parallel_saga)
    run.state = engine_v1.state  # started under v1, now v1 and v2 are loaded
    run.send(d.authorized("o-1"))  # out of v1's order: charge before stock
    assert run.state is not None and run.state.version == 1
    fresh = Run(d.order_saga, d.parallel_saga, saga_id="o-2").send(d.placed("o-2"))
    assert fresh.state is not None and fresh.state.version == 2


def test_state_round_trips_through_json() -> None:
    run = Run().send(d.placed("o-1")).send(d.reserved("o-1")).send(d.declined("o-1"))
    assert run.state is not None
    assert SagaState.from_bytes(run.state.to_bytes()) == run.state


def test_one_step_per_event_type() -> None:
    twin = Step("again", success=[d.reserved("x").__class__], needs_compensation=False)
    saga = replace(d.order_saga, steps=[d.stock_step, twin], deadline=timedelta(seconds=1))
    with pytest.raises(TopologyError, match="already used by step 'reserve-stock'"):
        saga.validate(Catalog.load(ROOT / "schemas"))
