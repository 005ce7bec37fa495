"""The durable state of one saga instance, as stored (JSON) in the changelog topic.

Everything the tracker needs to carry on after a crash lives here: statuses, the results a
compensation is built from, the deadlines (so timers survive restarts), the event ids already
seen (duplicates), events that arrived before their saga's start, and a bounded history for
``choreo saga show``. Times are epoch seconds: cheap to compare, exact in JSON.

The pieces of a state (steps, seen events, history entries, a cancellation) are slotted
dataclasses, not pydantic models: the engine builds several and assigns a dozen of their
fields per event, and a dataclass is built ~5x and assigned ~5x faster (pydantic's
``__init__`` validates, its ``__setattr__`` runs in Python). ``SagaState`` stays a pydantic
model, so the changelog's JSON is parsed (into these dataclasses) and written by pydantic-core
exactly as before; ``tests/saga/test_state_format.py`` holds that JSON byte for byte.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field

HISTORY_LIMIT = 60
SEEN_LIMIT = 200
BUFFER_LIMIT = 100


class SagaStatus(StrEnum):
    WAITING = "waiting"
    """Events arrived but not the start yet; kept for the saga's ``orphan_ttl``."""
    RUNNING = "running"
    COMPLETED = "completed"
    COMPENSATING = "compensating"
    COMPENSATED = "compensated"
    FAILED = "failed"
    """Parked: a compensation was never confirmed; a person must finish the undo."""


TERMINAL = frozenset({SagaStatus.COMPLETED, SagaStatus.COMPENSATED, SagaStatus.FAILED})


class StepStatus(StrEnum):
    PENDING = "pending"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    TIMED_OUT = "timed-out"
    SKIPPED = "skipped"
    COMPENSATING = "compensating"
    """Its compensation was emitted; waiting for the confirmation."""
    COMPENSATED = "compensated"


@dataclass(slots=True)
class SeenEvent:
    """An input event as stored: enough to rebuild the model and to explain it later."""

    id: str
    type: str
    payload: dict[str, Any]
    at: float
    """When the tracker handled it."""
    occurred_at: float | None = None
    """When it happened, by its producer's clock (``ce_time``); None when it carried none."""
    source: str | None = None
    """Its ``ce_source`` header: who sent it (names the canceller of an abort event)."""


@dataclass(slots=True)
class StepState:
    """A step's progress; a sub-saga has one too (named as the sub-saga), holding its own
    deadline in ``due_at`` and its completion event in ``result``."""

    status: StepStatus = StepStatus.PENDING
    due_at: float | None = None
    """The step's own deadline, set when the step becomes due."""
    result: SeenEvent | None = None
    """The success event: what the compensation is built from."""
    attempts: int = 0
    """Compensation emissions so far."""
    compensation_due_at: float | None = None
    fallback: int = 0
    """The fallbacks tried so far (0: the step's own attempt)."""
    progress: int = 0
    """Progress events received."""
    progress_at: float | None = None
    """When the last progress event was handled."""
    beat_due_at: float | None = None
    """When the step's heartbeat runs out, unless progress re-arms it first."""
    stalled: bool = False
    """Its heartbeat ran out and the saga was parked for a person (``on_silence="park"``)."""


@dataclass(slots=True)
class Cancellation:
    """An abort event as ``choreo saga show`` reports it: who asked, why, and whether it
    was applied (not when the saga had already completed)."""

    event_id: str
    type: str
    by: str
    reason: str
    at: float
    applied: bool


@dataclass(slots=True, kw_only=True)
class HistoryEntry:
    at: float
    trigger: str
    """The event type that arrived, or ``deadline``."""
    event_id: str | None = None
    occurred_at: float | None = None
    """The event's own time (``ce_time``), beside ``at``, when the tracker handled it."""
    step: str | None = None
    action: str


class SagaState(BaseModel):
    saga_id: str
    saga: str
    version: int
    status: SagaStatus
    started_at: float | None = None
    deadline_at: float | None = None
    start: SeenEvent | None = None
    trace: dict[str, str] = Field(default_factory=dict)
    """``traceparent``/``tracestate`` of the start event, copied onto compensations."""
    steps: dict[str, StepState] = Field(default_factory=dict)
    completion_id: str | None = None
    reason: str | None = None
    """Why the saga is being compensated."""
    cancel: Cancellation | None = None
    """The first abort event that arrived while the saga was running or completed."""
    cause_id: str | None = None
    """The event that triggered compensation: the causation id of every compensation."""
    seen_ids: list[str] = Field(default_factory=list)
    buffer: list[SeenEvent] = Field(default_factory=list)
    expires_at: float | None = None
    """When a waiting saga's buffered events, or a finished saga's state, are dropped."""
    sub_versions: dict[str, int] = Field(default_factory=dict)
    """The version of each sub-saga the definition embedded when this saga started."""
    wake_at: float | None = None
    """The earliest deadline that matters in the current status (for the timer loop)."""
    updated_at: float = 0.0
    history: list[HistoryEntry] = Field(default_factory=list)

    if not TYPE_CHECKING:  # mypy keeps checking each assignment's field and type
        # A plain attribute store (~0.15 us), not pydantic's ``__setattr__`` (two Python calls,
        # ~0.65 us, to record the field in ``model_fields_set``, which nothing reads: the
        # changelog writes every field). The engine assigns about six fields per event. A
        # misspelt field is no longer refused at run time; mypy refuses it.
        __setattr__ = object.__setattr__

    def note(
        self,
        at: float,
        trigger: str,
        action: str,
        *,
        event: SeenEvent | None = None,
        step: str | None = None,
    ) -> None:
        self.history.append(
            HistoryEntry(
                at=at,
                trigger=trigger,
                event_id=None if event is None else event.id,
                occurred_at=None if event is None else event.occurred_at,
                step=step,
                action=action,
            )
        )
        del self.history[:-HISTORY_LIMIT]

    def remember(self, event_id: str) -> None:
        """The start event is remembered on start and again as it is applied: once is enough
        (a second copy costs a 36-byte id in every state and a place in ``SEEN_LIMIT``)."""
        if self.seen_ids and self.seen_ids[-1] == event_id:
            return
        self.seen_ids.append(event_id)
        del self.seen_ids[:-SEEN_LIMIT]

    def clone(self) -> SagaState:
        """A deep copy, through JSON: about 3x faster than ``model_copy(deep=True)`` on a
        typical state (pydantic-core parses in Rust; a deep copy recurses in Python)."""
        return SagaState.from_bytes(self.to_bytes())

    def to_bytes(self) -> bytes:
        """``model_dump_json`` without its keyword handling and the str to bytes copy."""
        return self.__pydantic_serializer__.to_json(self)

    @classmethod
    def from_bytes(cls, data: bytes) -> SagaState:
        """``model_validate_json`` straight to pydantic-core (the wrapper costs ~1 us)."""
        return cls.__pydantic_validator__.validate_json(data)  # type: ignore[no-any-return]
