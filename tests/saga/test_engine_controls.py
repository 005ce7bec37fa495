"""The three controls of a long-running saga, rule by rule: abort, heartbeat, fallback.

The model test (test_engine_model.py) checks them under every interleaving; these pin the
details it does not look at: who and why, the log line, un-parking, the command's fields.
"""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import msgspec
from engine_run import Run
from test_engine_model import (
    BAD,
    CANCEL,
    OK,
    PROGRESS,
    RETRY,
    RETRY_BAD,
    UNDO,
    UNDONE,
    Begin,
    _step,
)

from choreo._saga.inspect import timeline
from choreo.saga import Saga, SagaState, SagaStatus, Step, StepStatus
from services.events import SagaFailed


def _saga(*steps: Step) -> Saga:
    return Saga("model", 1, Begin, list(steps), abort=[CANCEL])


def test_a_cancel_waits_for_the_step_in_flight_then_undoes_the_rest_last_first() -> None:
    run = Run(_saga(_step(0, True, False, False), _step(1, True, False, False)), saga_id="m")
    run.send(Begin(saga="m", flags=0)).send(OK[0](saga="m"))
    run.send(CANCEL(saga="m", requested_by="cust-7", reason="found it cheaper"))
    assert run.status is SagaStatus.COMPENSATING and run.emitted == []  # s1 may still answer
    run.send(OK[1](saga="m"))
    assert run.types() == [UNDO[1]]
    run.send(UNDONE[1](saga="m"))
    assert run.types() == [UNDO[1], UNDO[0]]
    run.send(UNDONE[0](saga="m"))
    assert run.status is SagaStatus.COMPENSATED
    assert run.state is not None and run.state.cancel is not None
    assert (run.state.cancel.by, run.state.cancel.reason) == ("cust-7", "found it cheaper")
    assert run.state.reason == "cancelled by cust-7: found it cheaper"
    assert "cancel requested by cust-7 at" in timeline(run.state)


def test_a_cancel_after_completion_is_reported_not_applied() -> None:
    run = Run(_saga(_step(0, True, False, False)), saga_id="m")
    run.send(Begin(saga="m", flags=0)).send(OK[0](saga="m"))
    assert run.status is SagaStatus.COMPLETED
    run.send(CANCEL(saga="m", requested_by="cust-7", reason="too late"))
    assert run.status is SagaStatus.COMPLETED and run.emitted == []
    assert run.state is not None and run.state.cancel is not None
    assert not run.state.cancel.applied
    assert any("arrived after the saga completed; not applied" in line for line in run.logs)
    assert "NOT applied" in timeline(run.state)


def test_a_cancel_read_before_the_start_cancels_it_when_it_starts() -> None:
    run = Run(_saga(_step(0, True, False, False)), saga_id="m")
    run.send(CANCEL(saga="m", requested_by="cust-7", reason="oops"))
    run.send(Begin(saga="m", flags=0))
    assert run.status is SagaStatus.COMPENSATING  # waiting for s0, then undoing it
    run.send(OK[0](saga="m")).send(UNDONE[0](saga="m"))
    assert run.status is SagaStatus.COMPENSATED and run.types() == [UNDO[0]]


def test_a_buffered_cancel_whose_stored_fields_cannot_be_read_still_cancels() -> None:
    """A state someone else wrote, its buffered cancel's payload not a JSON object: read when
    the start arrives, the cancel applies and says why it has no reason, the tracker going on."""
    run = Run(_saga(_step(0, True, False, False)), saga_id="m")
    run.send(CANCEL(saga="m", requested_by="cust-7", reason="oops"))
    assert run.state is not None
    run.state.buffer[0].payload = msgspec.Raw(b'["cust-7", "oops"]')
    run.send(Begin(saga="m", flags=0))
    assert run.status is SagaStatus.COMPENSATING
    assert run.state is not None and run.state.cancel is not None
    assert "its stored fields cannot be read" in run.state.cancel.reason
    assert "is not a JSON object" in run.state.cancel.reason


def test_progress_re_arms_the_heartbeat_and_silence_fails_the_step() -> None:
    run = Run(_saga(_step(0, True, False, False), _step(1, True, False, False, True)), saga_id="m")
    run.send(Begin(saga="m", flags=0)).send(OK[0](saga="m"))
    for _ in range(3):  # 3 s apart: each inside the 4 s heartbeat
        run.advance(3).send(PROGRESS[1](saga="m"))
    assert run.status is SagaStatus.RUNNING and run.state is not None
    assert run.state.steps["s1"].progress == 3
    assert "3 progress" in timeline(run.state)
    run.advance(3.9)
    assert run.status is SagaStatus.RUNNING
    run.advance(0.2)
    assert run.step("s1") is StepStatus.TIMED_OUT
    assert run.types() == [UNDO[0]]
    assert "heartbeat" in str(run.state.reason)


def test_a_silent_step_can_park_the_saga_until_it_reports_again() -> None:
    saga = _saga(replace(_step(0, True, False, False, True), on_silence="park"))
    run = Run(saga, saga_id="m").send(Begin(saga="m", flags=0))
    run.advance(4.5)
    assert run.status is SagaStatus.FAILED and run.state is not None
    assert run.state.steps["s0"].stalled
    assert any("sent no progress within its heartbeat" in line for line in run.logs)
    run.send(PROGRESS[0](saga="m"))
    assert run.status is SagaStatus.RUNNING and run.state.steps["s0"].beat_due_at is not None
    run.send(OK[0](saga="m"))
    assert run.status is SagaStatus.COMPLETED


def test_each_parking_for_silence_sends_its_own_parked_event_replayed_alike() -> None:
    step = replace(_step(0, True, False, False, True), on_silence="park")
    saga = Saga("model", 1, Begin, [step], abort=[CANCEL], parked=SagaFailed)

    def parked_ids() -> list[str]:
        run = Run(saga, saga_id="m").send(Begin(saga="m", flags=0))
        run.advance(4.5)  # silent: parked
        run.send(PROGRESS[0](saga="m"))  # reports again: un-parked
        run.advance(4.5)  # silent again: parked again
        assert run.status is SagaStatus.FAILED
        return [e.event_id for e in run.emits if isinstance(e.event, SagaFailed)]  # type: ignore[attr-defined]

    first = parked_ids()
    assert len(first) == 2 and first[0] != first[1], first  # the same id would be dropped
    assert parked_ids() == first  # a replay after a crash sends the same ids


def test_a_fallback_chain_is_tried_in_order_before_compensating() -> None:
    run = Run(_saga(_step(0, True, False, False), _step(1, True, True, False, False, 2)))
    run.saga_id = "m"
    run.send(Begin(saga="m", flags=0)).send(OK[0](saga="m"))
    run.send(BAD[1](saga="m"), event_id="bad-1")
    assert run.status is SagaStatus.RUNNING and run.types() == [RETRY[0][1]]
    first = run.emits[0]
    assert first.causation_id == "bad-1" and first.correlation_id == "m"  # type: ignore[attr-defined]
    run.advance(4)  # the step's 5 s deadline counts again from the fallback
    assert run.status is SagaStatus.RUNNING
    run.send(BAD[1](saga="m"))  # a second report of the replaced attempt
    assert run.status is SagaStatus.RUNNING
    run.send(RETRY_BAD[0][1](saga="m"))
    assert run.types() == [RETRY[0][1], RETRY[1][1]]
    run.send(RETRY_BAD[1][1](saga="m"))
    assert run.status is SagaStatus.COMPENSATING and run.types()[-1] is UNDO[0]
    assert run.state is not None and "RetryBad1x1" in str(run.state.reason)


def test_a_fallback_success_completes_the_step() -> None:
    run = Run(_saga(_step(0, True, False, False, False, 1)), saga_id="m")
    run.send(Begin(saga="m", flags=0)).send(BAD[0](saga="m")).send(OK[0](saga="m"))
    assert run.status is SagaStatus.COMPLETED
    assert run.state is not None and run.state.steps["s0"].fallback == 1


def test_state_written_before_the_controls_still_loads() -> None:
    old = (
        '{"saga_id":"m","saga":"model","version":1,"status":"running","steps":{"s0":'
        '{"status":"pending","due_at":null,"result":null,"attempts":0,'
        '"compensation_due_at":null}},"history":[]}'
    )
    state = SagaState.from_bytes(old.encode())
    assert state.cancel is None and state.steps["s0"].fallback == 0
    assert not state.steps["s0"].stalled and state.steps["s0"].beat_due_at is None
