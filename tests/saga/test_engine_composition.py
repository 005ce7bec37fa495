"""Sub-sagas and versions in the engine: a saga used as one step of another."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import pytest
import saga_defs as d
from engine_run import Run

from choreo import TopologyError
from choreo._saga.inspect import timeline
from choreo._schemas import Catalog
from choreo.saga import Saga, SagaStatus, StepStatus, SubSaga
from services.events import (
    CancelOrder,
    OrderCompleted,
    OrderReceived,
    RefundPayment,
    ReleaseStock,
)

ROOT = Path(__file__).resolve().parents[2]
CATALOG = Catalog.load(ROOT / "schemas")


def test_the_sub_sagas_steps_are_steps_of_the_outer_saga() -> None:
    d.composed_saga.validate(CATALOG)
    names = [p.step.name for p in d.composed_saga.placed]
    assert names == ["order", "fulfilment/reserve-stock", "fulfilment/charge", "approval"]
    run = Run(d.composed_saga).send(d.placed("o-1")).send(d.reserved("o-1"))
    assert run.step("fulfilment") is StepStatus.PENDING
    run.send(d.authorized("o-1"))
    assert run.step("fulfilment") is StepStatus.SUCCEEDED
    run.send(d.completed("o-1"))
    assert run.status is SagaStatus.COMPLETED and run.emitted == []


def test_outer_failure_compensates_the_sub_sagas_steps_in_reverse() -> None:
    run = Run(d.composed_saga).send(d.placed("o-1", total="5000"))
    run.send(d.reserved("o-1")).send(d.authorized("o-1")).send(d.rejected("o-1"))
    assert run.types() == [RefundPayment]
    run.send(d.refunded("o-1"))
    assert run.types() == [RefundPayment, ReleaseStock]
    assert run.step("fulfilment") is StepStatus.SUCCEEDED  # half undone
    run.send(d.released("o-1")).send(d.cancelled("o-1"))
    assert run.types() == [RefundPayment, ReleaseStock, CancelOrder]
    assert run.step("fulfilment") is StepStatus.COMPENSATED
    assert run.status is SagaStatus.COMPENSATED


def test_a_failing_sub_saga_is_a_failed_outer_step() -> None:
    run = Run(d.composed_saga).send(d.placed("o-1")).send(d.reserved("o-1"))
    run.send(d.declined("o-1"))
    assert run.step("fulfilment") is StepStatus.FAILED
    assert run.state is not None
    assert run.state.reason == "step 'fulfilment/charge' failed (shop.payments.PaymentDeclined)"
    run.send(d.released("o-1")).send(d.cancelled("o-1"))
    assert run.types() == [ReleaseStock, CancelOrder]
    assert run.status is SagaStatus.COMPENSATED


def test_the_sub_sagas_deadline_counts_from_when_it_is_due() -> None:
    slow_order = replace(d.order_step, deadline=None)
    outer = replace(d.composed_saga, steps=[slow_order, SubSaga(d.fulfilment_v1)])
    run = Run(outer).send(d.placed("o-1")).send(d.reserved("o-1")).advance(9.9)
    assert run.status is SagaStatus.RUNNING
    run.advance(0.2)  # fulfilment's 10 s deadline; its steps have none left running
    assert run.step("fulfilment") is StepStatus.TIMED_OUT
    assert run.state is not None and run.state.reason == "sub-saga 'fulfilment' missed its deadline"
    assert run.types() == []  # its charge step may still report: waited for, for a while
    run.advance(1.6)
    assert run.types() == [ReleaseStock]


def test_a_sub_saga_waits_for_its_own_completion_event() -> None:
    sub = replace(d.fulfilment_v1, completed=[OrderCompleted])
    outer = replace(d.composed_saga, steps=[d.order_step, SubSaga(sub)], completed=())
    outer.validate(CATALOG)
    run = Run(outer).send(d.placed("o-1")).send(d.reserved("o-1")).send(d.authorized("o-1"))
    assert run.step("fulfilment") is StepStatus.PENDING
    run.send(d.completed("o-1"))
    assert run.step("fulfilment") is StepStatus.SUCCEEDED
    assert run.status is SagaStatus.COMPLETED


def test_a_conditional_sub_saga_is_skipped_whole() -> None:
    outer = replace(
        d.composed_saga,
        steps=[d.order_step, SubSaga(d.fulfilment_v1, when=lambda placed: placed.total > 100)],
    )
    run = Run(outer).send(d.placed("o-1")).send(d.completed("o-1"))
    assert run.step("fulfilment") is StepStatus.SKIPPED
    assert run.step("fulfilment/charge") is StepStatus.SKIPPED
    assert run.status is SagaStatus.COMPLETED


def test_nested_sub_sagas_get_nested_names() -> None:
    inner = Saga("pay", version=1, start=d.placed("x").__class__, steps=[d.charge_step])
    middle = Saga("fulfil", version=1, start=inner.start, steps=[d.stock_step, SubSaga(inner)])
    outer = replace(d.composed_saga, steps=[d.order_step, SubSaga(middle)])
    outer.validate(CATALOG)
    run = Run(outer).send(d.placed("o-1")).send(d.reserved("o-1")).send(d.declined("o-1"))
    assert run.step("fulfil/pay") is StepStatus.FAILED
    assert run.step("fulfil") is StepStatus.FAILED
    assert run.types() == [ReleaseStock]


def test_the_timeline_shows_the_sub_saga_and_its_steps() -> None:
    run = Run(d.composed_saga).send(d.placed("o-1")).send(d.reserved("o-1"))
    run.send(d.declined("o-1"))
    assert run.state is not None
    text = timeline(run.state)
    assert "started under v3 (sub-sagas fulfilment v1)" in text
    assert re.search(r"fulfilment +failed \(sub-saga v1\)", text)
    assert re.search(r"fulfilment/charge +failed", text)
    assert "sub-saga failed: step 'fulfilment/charge' failed" in text


@pytest.mark.parametrize(
    ("steps", "message"),
    [
        (
            [SubSaga(replace(d.fulfilment_v1, start=OrderReceived))],
            "sub-saga 'fulfilment' .* starts with shop.orders.OrderReceived",
        ),
        (
            [SubSaga(replace(d.fulfilment_v1, steps=[replace(d.charge_step, compensate=None)]))],
            "step 'fulfilment/charge' has no compensation",
        ),
        (
            [SubSaga(d.fulfilment_v1), SubSaga(d.fulfilment_v2)],
            "two steps are named 'fulfilment/reserve-stock'",
        ),
        (
            [SubSaga(replace(d.fulfilment_v1, completed=[OrderCompleted]))],
            "OrderCompleted also completes the outer saga",
        ),
    ],
    ids=["other-start", "no-compensation", "used-twice", "shared-completion"],
)
def test_bad_sub_sagas_are_errors_naming_them(steps: list[SubSaga], message: str) -> None:
    outer = replace(d.composed_saga, steps=[d.order_step, *steps])
    with pytest.raises(TopologyError, match=message):
        outer.validate(CATALOG)


def test_a_sub_saga_used_twice_under_two_names_is_valid_if_events_differ() -> None:
    stock_only = Saga("stock", version=1, start=d.composed_saga.start, steps=[d.stock_step])
    charge_only = replace(stock_only, name="charge", steps=[d.charge_step])
    outer = replace(
        d.composed_saga, steps=[d.order_step, SubSaga(stock_only), SubSaga(charge_only)]
    )
    outer.validate(CATALOG)
    run = Run(outer).send(d.placed("o-1")).send(d.reserved("o-1")).send(d.declined("o-1"))
    assert run.types() == [ReleaseStock]


def test_in_flight_sagas_keep_their_version_and_sub_saga_versions() -> None:
    started = Run(d.composed_saga).send(d.placed("o-1"))  # only v3 loaded
    run = Run(*d.composed_versions)  # v3 and v4 now
    run.state = started.state
    run.advance(4.1)  # fulfilment v1 is sequential: stock's deadline runs from the start
    assert run.state is not None and run.state.version == 3
    assert run.state.sub_versions == {"fulfilment": 1}
    assert run.types() == [CancelOrder]

    fresh = Run(*d.composed_versions, saga_id="o-2").send(d.placed("o-2"))
    assert fresh.state is not None and fresh.state.version == 4
    assert fresh.state.sub_versions == {"fulfilment": 2}
    fresh.send(d.authorized("o-2"))  # v2 runs stock and charge at the same time
    assert fresh.step("fulfilment/charge") is StepStatus.SUCCEEDED
    fresh.send(d.reserved("o-2")).send(d.completed("o-2"))
    assert fresh.status is SagaStatus.COMPLETED


def test_a_saga_whose_sub_saga_version_changed_under_it_is_left_alone() -> None:
    started = Run(d.composed_saga).send(d.placed("o-1"))
    changed = replace(d.composed_saga, steps=[d.order_step, SubSaga(d.fulfilment_v2)])
    run = Run(changed)
    run.state = before = started.state
    run.send(d.reservation_failed("o-1"), event_id="late")
    assert run.state == before and run.emitted == []
    assert any("fulfilment v1" in line and "embeds fulfilment v2" in line for line in run.logs)
