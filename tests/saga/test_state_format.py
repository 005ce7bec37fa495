"""The changelog's JSON layout of a saga state: what every tracker before this one reads.

A state and its pieces are msgspec structs, read and written by msgspec's JSON codec for the
engine's speed; the JSON must stay what the trackers before them read (older trackers, the CLI,
the console's raw readers and ``peek``'s layout all depend on it). ``GOLDEN`` was written by
the pydantic-model state (commit e5046ba), with every field set away from its default
somewhere; ``COMPACT`` is the same state as written since 2026-12-05: a step, a seen event and
a history entry leave out the fields at their defaults, which every reader before fills in
with the same values.
"""

from __future__ import annotations

import json
from typing import Any

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st
from state_strategies import seen_events

from choreo._saga.state import (
    NO_PAYLOAD,
    Cancellation,
    HistoryEntry,
    SagaState,
    SagaStatus,
    SeenEvent,
    StepState,
    StepStatus,
    payload_json,
)

GOLDEN = (
    b'{"saga_id":"o-1","saga":"order","version":2,"status":"compensating",'
    b'"started_at":1796331976.5,"deadline_at":1796335576.5,'
    b'"start":{"id":"e-1","type":"shop.orders.OrderPlaced","payload":{"order_id":"o-1",'
    b'"total":"19.98","items":[{"sku":"S","quantity":2}],"note":null},'
    b'"at":1796331976.5039585,"occurred_at":1796331976.25,"source":"orders"},'
    b'"trace":{"traceparent":"00-6d40eac22b06441f92b86dc82e8b689b-775775a0b1fb4d3c-01",'
    b'"tracestate":"k=v"},'
    b'"steps":{"order":{"status":"succeeded","due_at":null,"result":{"id":"e-1",'
    b'"type":"shop.orders.OrderPlaced","payload":{"order_id":"o-1","total":"19.98",'
    b'"items":[{"sku":"S","quantity":2}],"note":null},"at":1796331976.5039585,'
    b'"occurred_at":1796331976.25,"source":"orders"},"attempts":0,'
    b'"compensation_due_at":null,"fallback":0,"progress":0,"progress_at":null,'
    b'"beat_due_at":null,"stalled":false},'
    b'"pay":{"status":"compensating","due_at":1.5,"result":{"id":"e-2",'
    b'"type":"shop.payments.PaymentAuthorized","payload":{"amount":"1.00"},"at":2.0,'
    b'"occurred_at":null,"source":null},"attempts":2,"compensation_due_at":3.25,"fallback":1,'
    b'"progress":4,"progress_at":2.5,"beat_due_at":9.0,"stalled":true}},'
    b'"completion_id":"e-9","reason":"step \'pay\' failed",'
    b'"cancel":{"event_id":"e-5","type":"shop.orders.CancelRequested","by":"ops",'
    b'"reason":"customer asked","at":5.0,"applied":true},"cause_id":"e-5",'
    b'"seen_ids":["e-1","e-2"],'
    b'"buffer":[{"id":"e-3","type":"t","payload":{},"at":1.0,"occurred_at":null,"source":null}],'
    b'"expires_at":99.0,"sub_versions":{"payment":3},"wake_at":3.25,"updated_at":5.5,'
    b'"history":[{"at":1.0,"trigger":"shop.orders.OrderPlaced","event_id":"e-1",'
    b'"occurred_at":0.5,"step":"order","action":"step succeeded"},'
    b'{"at":5.0,"trigger":"deadline","event_id":null,"occurred_at":null,"step":null,'
    b'"action":"compensating: x"}]}'
)


COMPACT = (
    b'{"saga_id":"o-1","saga":"order","version":2,"status":"compensating",'
    b'"started_at":1796331976.5,"deadline_at":1796335576.5,'
    b'"start":{"id":"e-1","type":"shop.orders.OrderPlaced","payload":{"order_id":"o-1",'
    b'"total":"19.98","items":[{"sku":"S","quantity":2}],"note":null},'
    b'"at":1796331976.5039585,"occurred_at":1796331976.25,"source":"orders"},'
    b'"trace":{"traceparent":"00-6d40eac22b06441f92b86dc82e8b689b-775775a0b1fb4d3c-01",'
    b'"tracestate":"k=v"},'
    b'"steps":{"order":{"status":"succeeded","result":{"id":"e-1",'
    b'"type":"shop.orders.OrderPlaced","payload":{"order_id":"o-1","total":"19.98",'
    b'"items":[{"sku":"S","quantity":2}],"note":null},"at":1796331976.5039585,'
    b'"occurred_at":1796331976.25,"source":"orders"}},'
    b'"pay":{"status":"compensating","due_at":1.5,"result":{"id":"e-2",'
    b'"type":"shop.payments.PaymentAuthorized","payload":{"amount":"1.00"},"at":2.0},'
    b'"attempts":2,"compensation_due_at":3.25,"fallback":1,'
    b'"progress":4,"progress_at":2.5,"beat_due_at":9.0,"stalled":true}},'
    b'"completion_id":"e-9","reason":"step \'pay\' failed",'
    b'"cancel":{"event_id":"e-5","type":"shop.orders.CancelRequested","by":"ops",'
    b'"reason":"customer asked","at":5.0,"applied":true},"cause_id":"e-5",'
    b'"seen_ids":["e-1","e-2"],'
    b'"buffer":[{"id":"e-3","type":"t","payload":{},"at":1.0}],'
    b'"expires_at":99.0,"sub_versions":{"payment":3},"wake_at":3.25,"updated_at":5.5,'
    b'"history":[{"at":1.0,"trigger":"shop.orders.OrderPlaced","event_id":"e-1",'
    b'"occurred_at":0.5,"step":"order","action":"step succeeded"},'
    b'{"at":5.0,"trigger":"deadline","action":"compensating: x"}]}'
)


def built() -> SagaState:
    """``GOLDEN``'s state, as the engine builds states: the pieces made in Python."""
    start = SeenEvent(
        id="e-1",
        type="shop.orders.OrderPlaced",
        payload=payload_json(
            {
                "order_id": "o-1",
                "total": "19.98",
                "items": [{"sku": "S", "quantity": 2}],
                "note": None,
            }
        ),
        at=1796331976.5039585,
        occurred_at=1796331976.25,
        source="orders",
    )
    paid = SeenEvent(
        id="e-2",
        type="shop.payments.PaymentAuthorized",
        payload=payload_json({"amount": "1.00"}),
        at=2.0,
    )
    return SagaState(
        saga_id="o-1",
        saga="order",
        version=2,
        status=SagaStatus.COMPENSATING,
        started_at=1796331976.5,
        deadline_at=1796335576.5,
        start=start,
        trace={
            "traceparent": "00-6d40eac22b06441f92b86dc82e8b689b-775775a0b1fb4d3c-01",
            "tracestate": "k=v",
        },
        steps={
            "order": StepState(status=StepStatus.SUCCEEDED, result=start),
            "pay": StepState(
                status=StepStatus.COMPENSATING,
                due_at=1.5,
                result=paid,
                attempts=2,
                compensation_due_at=3.25,
                fallback=1,
                progress=4,
                progress_at=2.5,
                beat_due_at=9.0,
                stalled=True,
            ),
        },
        completion_id="e-9",
        reason="step 'pay' failed",
        cancel=Cancellation(
            event_id="e-5",
            type="shop.orders.CancelRequested",
            by="ops",
            reason="customer asked",
            at=5.0,
            applied=True,
        ),
        cause_id="e-5",
        seen_ids=["e-1", "e-2"],
        buffer=[SeenEvent(id="e-3", type="t", payload=NO_PAYLOAD, at=1.0)],
        expires_at=99.0,
        sub_versions={"payment": 3},
        wake_at=3.25,
        updated_at=5.5,
        history=[
            HistoryEntry(
                at=1.0,
                trigger="shop.orders.OrderPlaced",
                event_id="e-1",
                occurred_at=0.5,
                step="order",
                action="step succeeded",
            ),
            HistoryEntry(at=5.0, trigger="deadline", action="compensating: x"),
        ],
    )


def test_a_state_is_written_byte_for_byte_as_laid_out() -> None:
    state = built()
    assert state.to_bytes() == COMPACT


FORMER_DEFAULTS: dict[type, dict[str, Any]] = {
    SeenEvent: {"occurred_at": None, "source": None},
    StepState: {
        "status": "pending",
        "due_at": None,
        "result": None,
        "attempts": 0,
        "compensation_due_at": None,
        "fallback": 0,
        "progress": 0,
        "progress_at": None,
        "beat_due_at": None,
        "stalled": False,
    },
    HistoryEntry: {"event_id": None, "occurred_at": None, "step": None},
}
"""What the readers before fill in for a missing field (the pydantic models of e5046ba and
every msgspec struct since): a field left out must mean exactly this to them."""


def test_the_fields_left_out_are_at_the_defaults_former_readers_fill_in() -> None:
    for kind, former in FORMER_DEFAULTS.items():
        now = {
            f.encode_name: f.default
            for f in msgspec.structs.fields(kind)
            if f.default is not msgspec.NODEFAULT
        }
        assert now == former, kind.__name__
    assert msgspec.json.encode(StepState()) == b"{}"  # a pending step: read as pending


def with_defaults(raw: dict[str, Any]) -> dict[str, Any]:
    """``raw`` as a reader that fills in every missing field of a step, a seen event and a
    history entry with its default (pydantic's and msgspec's readers before) sees it."""

    def seen(event: dict[str, Any] | None) -> dict[str, Any] | None:
        return None if event is None else FORMER_DEFAULTS[SeenEvent] | event

    raw = dict(raw)
    raw["start"] = seen(raw["start"])
    raw["buffer"] = [seen(event) for event in raw["buffer"]]
    raw["steps"] = {
        name: FORMER_DEFAULTS[StepState] | step | {"result": seen(step.get("result"))}
        for name, step in raw["steps"].items()
    }
    raw["history"] = [FORMER_DEFAULTS[HistoryEntry] | entry for entry in raw["history"]]
    return raw


def test_what_is_left_out_is_what_every_reader_before_fills_in() -> None:
    """The compact form means, field by field, what the former one did: only defaults left out."""
    assert with_defaults(json.loads(COMPACT)) == json.loads(GOLDEN)
    assert len(COMPACT) < len(GOLDEN)


def test_the_former_json_reads_back_typed_and_writes_back_compact() -> None:
    state = SagaState.from_bytes(GOLDEN)
    assert state == built()
    assert SagaState.from_bytes(COMPACT) == state
    assert state.to_bytes() == COMPACT
    # The engine compares statuses with ``is``: parsed statuses must be the enum members.
    assert state.status is SagaStatus.COMPENSATING
    assert state.steps["order"].status is StepStatus.SUCCEEDED
    assert state.steps["pay"].status is StepStatus.COMPENSATING
    assert isinstance(state.steps["pay"].result, SeenEvent)
    assert isinstance(state.cancel, Cancellation)
    assert isinstance(state.history[1], HistoryEntry)


def test_a_state_without_the_later_fields_loads_with_their_defaults() -> None:
    """A changelog written before a field existed (here: a step's heartbeat, fallbacks and
    progress, a seen event's times and source) still loads."""
    raw: dict[str, Any] = json.loads(GOLDEN)
    for step in raw["steps"].values():
        for name in ("fallback", "progress", "progress_at", "beat_due_at", "stalled"):
            del step[name]
    for event in (raw["start"], *raw["buffer"]):
        del event["occurred_at"], event["source"]
    state = SagaState.from_bytes(json.dumps(raw).encode())
    assert state.steps["pay"] == StepState(
        status=StepStatus.COMPENSATING,
        due_at=1.5,
        result=state.steps["pay"].result,
        attempts=2,
        compensation_due_at=3.25,
    )
    assert state.start is not None and (state.start.occurred_at, state.start.source) == (None, None)


_times = st.none() | st.floats(allow_nan=False, allow_infinity=False)
_text = st.text(max_size=12)
_events = seen_events(_text)
_steps = st.builds(
    StepState,
    status=st.sampled_from(StepStatus),
    due_at=_times,
    result=st.none() | _events,
    attempts=st.integers(0, 9),
    compensation_due_at=_times,
    fallback=st.integers(0, 3),
    progress=st.integers(0, 99),
    progress_at=_times,
    beat_due_at=_times,
    stalled=st.booleans(),
)


@given(
    steps=st.dictionaries(_text, _steps, max_size=4),
    buffer=st.lists(_events, max_size=3),
    status=st.sampled_from(SagaStatus),
)
def test_any_state_survives_the_round_trip(
    steps: dict[str, StepState], buffer: list[SeenEvent], status: SagaStatus
) -> None:
    state = SagaState(saga_id="s", saga="x", version=1, status=status, steps=steps, buffer=buffer)
    data = state.to_bytes()
    again = SagaState.from_bytes(data)
    assert again == state
    assert again.to_bytes() == data
    # Read by a reader that fills in the defaults, as older ones do: the same state again.
    full = msgspec.json.encode(with_defaults(json.loads(data)))
    assert SagaState.from_bytes(full) == state


def test_a_state_written_by_hand_loads_as_leniently_as_pydantic_read_it() -> None:
    """Numbers as text, an int for a float, 1 for a bool: what pydantic's lax mode took from a
    person or a tool editing the changelog still loads, to the same values."""
    raw: dict[str, Any] = json.loads(GOLDEN)
    raw["version"], raw["expires_at"], raw["wake_at"] = "2", 99, "3.25"
    raw["steps"]["pay"]["stalled"], raw["steps"]["pay"]["attempts"] = 1, "2"
    # Without spaces: a payload is kept as it was written (the next test).
    assert SagaState.from_bytes(json.dumps(raw, separators=(",", ":")).encode()) == built()


def test_a_payload_is_kept_as_written_and_parsed_only_when_read() -> None:
    raw: dict[str, Any] = json.loads(GOLDEN)
    raw["start"]["payload"] = {"order_id": "o-1", "total": 1e16}
    raw["buffer"][0]["payload"] = ["not", "an", "object"]  # loads; refused once read
    data = json.dumps(raw).encode()  # a space after each colon and comma
    state = SagaState.from_bytes(data)
    assert state.start is not None
    assert bytes(state.start.payload) == b'{"order_id": "o-1", "total": 1e+16}'
    assert state.start.fields() == {"order_id": "o-1", "total": 1e16}
    assert b'"payload":{"order_id": "o-1", "total": 1e+16}' in state.to_bytes()
    with pytest.raises(ValueError, match="payload of t event e-3 is not a JSON object"):
        state.buffer[0].fields()
