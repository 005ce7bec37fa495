"""The durable state of one saga instance, as stored (JSON) in the changelog topic.

Everything the tracker needs to carry on after a crash lives here: statuses, the results a
compensation is built from, the deadlines (so timers survive restarts), the event ids already
seen (duplicates), events that arrived before their saga's start, and a bounded history for
``choreo saga show``. Times are epoch seconds: cheap to compare, exact in JSON.

A state and its pieces (steps, seen events, history entries, a cancellation) are msgspec
structs, read and written by msgspec's JSON codec. The tracker parses a state and writes it
again for every event it handles, and this pair was its largest cost: on the bench's order saga
(~3.7 KB of JSON) pydantic-core took ~20 us to parse and ~12 us to write what msgspec parses in
~6 and writes in ~4, the same JSON (a number of 1e16 or more in a payload is written ``1e16``
where pydantic wrote ``1e+16``, which both read). Since 2026-12-05 a step, a seen event and a
history entry leave out the fields at their defaults (a finished step's eight, a history
entry's missing step): the bench's order saga 3,792 -> 3,319 bytes when completed, 2,260 ->
1,782 when started, ~9% less to write and parse. Every reader before fills a missing field
with the same default (``tests/saga/test_state_format.py`` holds both forms byte for byte),
so older trackers, the CLI and the console read the changelog as before; the state's own
fields are all written, in order, as ``peek`` reads them.
It is read as leniently as pydantic read it (``strict=False``: ``"5.5"`` for a float, ``1``
for a bool), so a state no tracker wrote but a person or a tool did still loads. Structs also build
and assign fields as fast as slotted dataclasses, which the engine does a dozen times per
event. They are not tracked by the garbage collector (``gc=False``): a state's pieces hold
only each other, strings, numbers and payloads (JSON text), so never a cycle the collector
would have to break, and the engine makes several per event that it would otherwise count and
walk.

An event's payload is kept as its JSON text (``msgspec.Raw``), parsed only when something reads
its fields (:meth:`SeenEvent.fields`: a compensation, a fallback command, an abort's reason, a
buffered event's model). A state holds up to four payloads (the start, and each step's result),
and almost every parse of a state is followed by its write and nothing else reads them: parsed,
they were ~95 of a state's ~225 objects, ~3 us of its parse, ~1 us of its write and ~3 us to
free again (the bench's order saga). The text is the same: each payload is written once, as
msgspec writes the dict, and from then on copied as it is.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

import msgspec

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


class SeenEvent(msgspec.Struct, gc=False, omit_defaults=True):
    """An input event as stored: enough to rebuild the model and to explain it later."""

    id: str
    type: str
    payload: msgspec.Raw
    """The event's fields, a JSON object, as text (:func:`payload_json`; :meth:`fields`)."""
    at: float
    """When the tracker handled it."""
    occurred_at: float | None = None
    """When it happened, by its producer's clock (``ce_time``); None when it carried none."""
    source: str | None = None
    """Its ``ce_source`` header: who sent it (names the canceller of an abort event)."""

    def fields(self) -> dict[str, Any]:
        """The payload parsed (a fresh dict each call); ``ValueError`` when it is not a JSON
        object (a state someone else wrote): the engine parks a saga whose compensation or
        fallback cannot be built, with this reason."""
        try:
            fields: dict[str, Any] = _FIELDS.decode(self.payload)
        except msgspec.DecodeError as exc:
            raise ValueError(
                f"the stored payload of {self.type} event {self.id} is not a JSON object: {exc}"
            ) from None
        return fields


class StepState(msgspec.Struct, gc=False, omit_defaults=True):
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


class Cancellation(msgspec.Struct, gc=False):
    """An abort event as ``choreo saga show`` reports it: who asked, why, and whether it
    was applied (not when the saga had already completed)."""

    event_id: str
    type: str
    by: str
    reason: str
    at: float
    applied: bool


class HistoryEntry(msgspec.Struct, kw_only=True, gc=False, omit_defaults=True):
    at: float
    trigger: str
    """The event type that arrived, or ``deadline``."""
    event_id: str | None = None
    occurred_at: float | None = None
    """The event's own time (``ce_time``), beside ``at``, when the tracker handled it."""
    step: str | None = None
    action: str


class SagaState(msgspec.Struct, gc=False):
    saga_id: str
    saga: str
    version: int
    status: SagaStatus
    started_at: float | None = None
    deadline_at: float | None = None
    start: SeenEvent | None = None
    trace: dict[str, str] = msgspec.field(default_factory=dict)
    """``traceparent``/``tracestate`` of the start event, copied onto compensations."""
    steps: dict[str, StepState] = msgspec.field(default_factory=dict)
    completion_id: str | None = None
    reason: str | None = None
    """Why the saga is being compensated."""
    cancel: Cancellation | None = None
    """The first abort event that arrived while the saga was running or completed."""
    cause_id: str | None = None
    """The event that triggered compensation: the causation id of every compensation."""
    seen_ids: list[str] = msgspec.field(default_factory=list)
    buffer: list[SeenEvent] = msgspec.field(default_factory=list)
    expires_at: float | None = None
    """When a waiting saga's buffered events, or a finished saga's state, are dropped."""
    sub_versions: dict[str, int] = msgspec.field(default_factory=dict)
    """The version of each sub-saga the definition embedded when this saga started."""
    wake_at: float | None = None
    """The earliest deadline that matters in the current status (for the timer loop)."""
    updated_at: float = 0.0
    history: list[HistoryEntry] = msgspec.field(default_factory=list)

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
        """A deep copy, through JSON: msgspec's codec copies a state faster than
        ``copy.deepcopy``, which recurses in Python."""
        return _DECODER.decode(_ENCODER.encode(self))

    def to_bytes(self) -> bytes:
        """The state as the changelog holds it."""
        return _ENCODER.encode(self)

    @classmethod
    def from_bytes(cls, data: bytes | memoryview) -> SagaState:
        """A state from the changelog's JSON; ``msgspec.DecodeError`` (its ``ValidationError``
        included) when it is not one. A payload is any JSON here: :meth:`SeenEvent.fields`
        refuses one that is not an object, when something reads it."""
        return _DECODER.decode(data)


UnreadableState = msgspec.DecodeError
"""What :meth:`SagaState.from_bytes` raises for bytes that are not a state (its
``ValidationError`` included): a changelog record someone else wrote."""


def payload_json(fields: dict[str, Any]) -> msgspec.Raw:
    """An event's fields as a :class:`SeenEvent` holds them."""
    return msgspec.Raw(_ENCODER.encode(fields))


NO_PAYLOAD = msgspec.Raw(b"{}")
"""What an event whose fields are never read keeps."""

_ENCODER = msgspec.json.Encoder()
_DECODER = msgspec.json.Decoder(SagaState, strict=False)
_FIELDS = msgspec.json.Decoder(dict[str, Any])
