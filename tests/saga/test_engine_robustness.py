"""User code that raises parks one saga, finished sagas are forgotten (timers: test_timers.py)."""

from __future__ import annotations

from dataclasses import replace

import saga_defs as d
from engine_run import Run

from choreo.saga import SagaStatus, StepStatus
from services.events import CancelOrder, ReleaseStock, SagaFailed


def test_a_condition_that_raises_parks_the_saga() -> None:
    run = Run(d.fragile_saga).send(d.reserved("o-1")).send(d.placed("o-1", total=d.BOOM))
    assert run.status is SagaStatus.FAILED
    [parked] = run.emitted
    assert isinstance(parked, SagaFailed) and parked.step == "approval"
    assert "ValueError: no approval rule for this total" in parked.reason
    [line] = run.logs
    assert "condition (when=) of step 'approval' raised" in line
    assert "fix the condition" in line and "choreo saga show o-1" in line
    assert run.state is not None
    assert run.state.history[-1].action == "recorded only: the saga is parked"  # the buffered one
    run.send(d.declined("o-1"))  # later events are kept in the history, nothing is emitted
    assert run.state.history[-1].action.startswith("recorded only")
    assert run.types() == [SagaFailed]


def test_a_compensation_builder_that_raises_parks_until_a_person_confirms() -> None:
    total = str(int(d.BOOM) + 1)
    run = Run(d.fragile_saga).send(d.placed("o-1", total=total)).send(d.reserved("o-1"))
    run.send(d.declined("o-1"))
    assert run.status is SagaStatus.FAILED
    assert run.types() == [SagaFailed]
    assert run.step("reserve-stock") is StepStatus.COMPENSATING
    assert any(
        "building shop.inventory.ReleaseStock for step 'reserve-stock' raised LookupError" in line
        and "publish one of shop.inventory.StockReleased" in line
        for line in run.logs
    )
    run.advance(5)  # no retries of a compensation that cannot be built
    assert run.types() == [SagaFailed]
    run.send(d.released("o-1"))  # released by hand: the tracker carries on
    assert run.types() == [SagaFailed, CancelOrder]
    run.send(d.cancelled("o-1"))
    assert run.status is SagaStatus.COMPENSATED


def test_a_builder_returning_the_wrong_event_parks_too() -> None:
    wrong = replace(d.stock_step, build=lambda given: d.cancelled(given.saga_id))
    saga = replace(d.order_saga, steps=[d.order_step, wrong, d.charge_step])
    run = Run(saga).send(d.placed("o-1")).send(d.reserved("o-1")).send(d.declined("o-1"))
    assert run.status is SagaStatus.FAILED
    assert any("returned OrderCancelled, not ReleaseStock" in line for line in run.logs)
    assert ReleaseStock not in run.types()


def test_finished_sagas_are_forgotten_after_their_retention() -> None:
    run = Run(d.fragile_saga).send(d.placed("o-1")).send(d.reservation_failed("o-1"))
    run.send(d.cancelled("o-1"))
    assert run.status is SagaStatus.COMPENSATED
    run.advance(d.RETENTION.total_seconds() - 0.1)
    assert run.status is SagaStatus.COMPENSATED
    run.advance(0.2)
    assert run.state is None  # a tombstone in the changelog
    run.send(d.released("o-1"))  # a straggler now counts as an orphan
    assert run.status is SagaStatus.WAITING


def test_retention_counts_from_the_last_change() -> None:
    run = Run(d.fragile_saga).send(d.placed("o-1")).send(d.reservation_failed("o-1"))
    run.send(d.cancelled("o-1")).advance(5)
    run.send(d.reserved("o-1"))  # a late success: the saga is compensating again
    assert run.status is SagaStatus.COMPENSATING
    run.advance(1.6)  # the charge step it started may report: waited for first
    run.send(d.released("o-1")).advance(d.RETENTION.total_seconds() - 1)
    assert run.status is SagaStatus.COMPENSATED


def test_a_saga_whose_version_is_not_loaded_is_forgotten_after_retention() -> None:
    started = Run(d.fragile_saga).send(d.placed("o-1")).send(d.reserved("o-1"))
    assert started.state is not None
    last_change = started.state.updated_at
    v2 = replace(d.fragile_saga, version=2)
    run = Run(v2)  # the tracker restarted with v2 only: v1 sagas cannot move
    run.state, run.now = started.state, started.now
    assert run.engine.stranded(started.state) == "definition v1 of 'order' is no longer loaded"
    assert run.engine.wake_at(started.state) == last_change + d.RETENTION.total_seconds()
    run.send(d.authorized("o-1"), event_id="e-paid").advance(d.RETENTION.total_seconds() - 1)
    assert run.status is SagaStatus.RUNNING  # nothing moves it, and it is kept meanwhile
    assert run.emitted == [] and "ignoring shop.payments.PaymentAuthorized" in run.logs[0]
    run.advance(1.1)
    assert run.state is None  # a tombstone in the changelog
    assert (
        "saga o-1 forgotten while running: definition v1 of 'order' is no longer loaded"
        in (run.logs[-1])
    )


def test_a_stranded_saga_moves_on_when_its_version_is_loaded_again() -> None:
    started = Run(d.fragile_saga).send(d.placed("o-1")).send(d.reserved("o-1"))
    run = Run(d.fragile_saga, replace(d.fragile_saga, version=2))
    run.state, run.now = started.state, started.now
    assert run.state is not None and run.engine.stranded(run.state) is None
    run.send(d.declined("o-1"), event_id="e-declined")
    assert run.types() == [ReleaseStock]
