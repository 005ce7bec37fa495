"""The saga state machine: pure functions from (state, event or clock) to (state, emits).

No Kafka, no clock, no I/O: the tracker feeds it decoded events and the time, and writes what it
returns in one transaction. That keeps every rule below unit-testable and replayable.

Rules:

* ``running`` → ``completed`` when every step succeeded (or was skipped by its ``when``) and,
  if the definition lists completion events, one of them arrived.
* A failure event, a step's deadline or the saga's deadline → ``compensating``: the succeeded
  steps that need compensation are undone one at a time, latest in definition order first
  (members of a parallel group in reverse listed order). Nothing is undone, and the saga is
  not final, while a step it activated (a pending member of the first stage not done) may
  still report: it is waited for up to its deadline, or one ``compensation_deadline`` if it
  has none, then counted as timed out. So a failure read before an earlier step's success
  (another topic) waits for it, and the success is undone in its place. Each compensation
  is re-emitted with the same ``ce_id`` after its ``compensation_deadline`` up to
  ``compensation_retries`` times; still unconfirmed → the saga is parked (``failed``) and the
  ``parked`` event is emitted. A confirmation arriving later un-parks it and compensation
  carries on.
* A success that arrives after its step timed out (even after ``compensated``) is compensated
  too, next: the saga goes back to ``compensating`` and waits again for the steps that
  success activated.
* An ``abort`` event (a cancellation from outside) → ``compensating`` like a failure, with
  the same waiting rules; who asked and why are kept for ``choreo saga show``. After
  completion it is reported (history, ``cancel``, a log line) and not applied; while the saga
  is already compensating or finished otherwise it is only noted.
* A step's ``progress`` event while it is pending re-arms its ``heartbeat`` (armed when the
  step becomes due). The heartbeat running out, read like any deadline (only once the
  tracker has caught up), times the step out (``on_silence="fail"``) or parks the saga
  (``"park"``: ``failed``, the parked event); the step reporting again un-parks it.
* A step failing with an event its next ``Fallback`` lists in ``on`` does not fail the saga:
  the fallback's command is emitted (fields from the failure event, then the start event)
  and the step waits again, its deadline and heartbeat re-armed. A failure of an attempt
  already replaced by a fallback is ignored. While compensating, no fallback is tried.
* Duplicate events (an already seen ``ce_id``) change nothing.
* Events whose saga has not started are buffered in a ``waiting`` state for the saga's
  ``orphan_ttl`` and replayed, in arrival order, when the start arrives; after the TTL they are
  dropped with a log line. (Across topics Kafka gives no order, so a reply can be read
  before the event it answers.)
* A sub-saga's steps are steps of the outer saga (``<sub-saga>/<step>``), compensated in the
  same reverse order. One of them failing or timing out, or the sub-saga's own deadline
  (counted from when it becomes due), fails the sub-saga and so the outer saga. It succeeds
  when its steps did and its completion event (if it lists any) arrived.
* A saga runs to the end under the definition version it started with, and the sub-saga
  versions that version embedded then; its events are ignored, with a log line, while that
  version is not loaded. Such a saga cannot move, so ``retention`` applies to it as to a
  finished one: it is forgotten ``retention`` (the latest loaded version's) after its last
  change, with a log line, unless its version is loaded again before then.
* User code that raises (a step's ``when`` at start, a compensation's ``build``) parks the
  saga (``failed``, the ``parked`` event, a log line saying what to do); the tracker goes on.
  A failed ``build`` leaves its step waiting for the confirmation, which a person can publish
  after undoing the step by hand, and the saga carries on from there.
* A finished saga (completed, compensated or failed) is forgotten ``retention`` after its last
  change; an event for it after that is treated as one whose start was never seen.
* Compensation events carry the saga id as correlation id, the triggering event (the failure
  event; the start event for a deadline) as causation id, and the start event's trace headers
  (the tracker replaces those with its decision span's context when tracing is on).
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import msgspec

from choreo._errors import TopologyError
from choreo._saga.definition import (
    CompensationInput,
    PlacedPart,
    PlacedStep,
    Saga,
    Step,
    fill,
)
from choreo._saga.peek import Timing
from choreo._saga.state import (
    BUFFER_LIMIT,
    NO_PAYLOAD,
    TERMINAL,
    Cancellation,
    SagaState,
    SagaStatus,
    SeenEvent,
    StepState,
    StepStatus,
    payload_json,
)
from choreo._schemas import Event, payloads

_IDS = uuid.UUID("7c1f3a52-2d7e-4b0e-9a55-0c40a8b1e6d3")
"""Namespace of emitted event ids: the same emission always gets the same ``ce_id``."""
_IDS_BYTES = _IDS.bytes

# The statuses as module constants: on Python 3.11 a read of ``StepStatus.PENDING`` is a call of
# ``EnumType.__getattr__`` (~150 ns, a constant ~5 ns), and the engine compares statuses a few
# dozen times per event.
_SAGA_WAITING: Final = SagaStatus.WAITING
_SAGA_RUNNING: Final = SagaStatus.RUNNING
_SAGA_COMPLETED: Final = SagaStatus.COMPLETED
_SAGA_COMPENSATING: Final = SagaStatus.COMPENSATING
_SAGA_COMPENSATED: Final = SagaStatus.COMPENSATED
_SAGA_FAILED: Final = SagaStatus.FAILED
_STEP_PENDING: Final = StepStatus.PENDING
_STEP_SUCCEEDED: Final = StepStatus.SUCCEEDED
_STEP_FAILED: Final = StepStatus.FAILED
_STEP_TIMED_OUT: Final = StepStatus.TIMED_OUT
_STEP_SKIPPED: Final = StepStatus.SKIPPED
_STEP_COMPENSATING: Final = StepStatus.COMPENSATING
_STEP_COMPENSATED: Final = StepStatus.COMPENSATED

_UNDONE_OR_DONE = frozenset({_STEP_SUCCEEDED, _STEP_SKIPPED, _STEP_COMPENSATING, _STEP_COMPENSATED})
"""A step that succeeded (perhaps undone since) or was skipped: its stage can move on."""
_PAYLOAD_UNREAD = frozenset({"compensated", "progress", "start"})
"""Roles whose event, once its saga started, is only noted: see :func:`_payload`."""
_DONE = frozenset({_STEP_SUCCEEDED, _STEP_SKIPPED})
"""A step that succeeded or was skipped: a saga (or sub-saga) of only these is complete."""


@dataclass(slots=True)
class Decoded:
    """An input event read straight into the payload a :class:`SeenEvent` stores (the tracker's
    codec does that without building the model and dumping it again, ~3-5 us an event): its
    model is read from its bytes only when a step condition (``when=``) needs it."""

    event_type: str
    payload: dict[str, Any]
    """As :func:`choreo._schemas.payloads.dump` writes the model."""
    data: bytes
    read: Callable[[bytes], Event]
    """The codec's reader of the model, which accepted these bytes when it read the payload."""

    def model(self) -> Event:
        return self.read(self.data)


@dataclass(slots=True)
class Incoming:
    """One decoded input event with the metadata the engine needs.

    This and the other classes built per event here are slotted and not frozen: a frozen
    dataclass's ``__init__`` sets each field through ``object.__setattr__``, ~3x slower, and
    nothing assigns their fields after construction."""

    saga_id: str
    event: Event | Decoded
    event_id: str
    trace: Mapping[str, str] = field(default_factory=dict)
    occurred_at: float | None = None
    """The event's own time (its ``ce_time``), when the producer gave one."""
    source: str | None = None
    """Its ``ce_source`` header, when readable."""


@dataclass(frozen=True)
class Emit:
    """An event the tracker must publish (in the same transaction as the new state)."""

    event: Event
    event_id: str
    correlation_id: str
    causation_id: str | None
    trace: Mapping[str, str]
    step: str
    reason: str


@dataclass(slots=True)
class Outcome:
    """The result of one input: ``state`` is None when the saga must be forgotten."""

    state: SagaState | None
    emits: list[Emit] = field(default_factory=list)
    logs: list[str] = field(default_factory=list)
    changed: bool = True


@dataclass(slots=True)
class _Routed:
    """An event of a started saga as ``_apply`` routed it: what its handlers read and change
    (the saga's state and the outcome are changed in place)."""

    definition: Saga
    state: SagaState
    seen: SeenEvent
    now: float
    outcome: Outcome
    note: Callable[[str], None]


@dataclass(slots=True)
class _StepEvent(_Routed):
    """An event of one step: the step's definition and its state (changed in place) too."""

    placed: PlacedStep
    step: StepState


class Engine:
    """Applies the rules of the module docstring for all versions of one saga."""

    def __init__(self, definitions: Sequence[Saga]) -> None:
        if not definitions:
            raise TopologyError("a saga tracker needs at least one saga definition")
        names = {d.name for d in definitions}
        if len(names) != 1:
            raise TopologyError(f"one tracker runs one saga, got {', '.join(sorted(names))}")
        self.name = definitions[0].name
        self.versions: dict[int, Saga] = {}
        for definition in definitions:
            if definition.version in self.versions:
                raise TopologyError(f"saga '{self.name}' v{definition.version} is defined twice")
            self.versions[definition.version] = definition
        self.latest = self.versions[max(self.versions)]
        self.models: dict[str, type[Event]] = {
            model.event_type: model
            for d in definitions
            for model in (*d.event_types(), *d.emitted_types())
        }
        self._plain: dict[type[Event], bool] = {}
        """Compensation models filled from payloads (:meth:`_takes_text`)."""
        self._inputs = frozenset(e.event_type for d in definitions for e in d.event_types())
        self._embedded = {d.version: d.part_versions() for d in definitions}
        """Each version's sub-saga versions, compared with every state's (per event and per
        wake time): built once, not per comparison."""

    def accepts(self, event_type: str) -> bool:
        """An input of this saga (its own compensations coming back on its topics are not)."""
        return event_type in self._inputs

    def step_of(self, state: SagaState | None, event_type: str) -> str | None:
        """The step an event settles or confirms under ``state``'s definition (for traces)."""
        definition = self.latest if state is None else self.versions.get(state.version)
        role = None if definition is None else definition.role_of(event_type)
        if role is None:
            return None
        return role.placed.step.name if role.placed is not None else role.part

    def wake_at(self, state: Timing) -> float | None:
        """When ``state`` next needs the clock: its own wake time, or, for a saga that cannot
        move because its definition is not loaded, when it is forgotten."""
        if self.stranded(state) is None:
            return state.wake_at
        return state.updated_at + self.latest.retention.total_seconds()

    def stranded(self, state: Timing) -> str | None:
        """Why the loaded definitions cannot move ``state`` on (None: they can, or it is
        finished and only waits for its retention)."""
        if state.status in TERMINAL:
            return None
        definition, why = self._definition(state)
        return why if definition is None else None

    def _definition(self, state: Timing) -> tuple[Saga | None, str]:
        """The definition ``state`` started under, or None and why it cannot be used."""
        definition = self.versions.get(state.version)
        if definition is None:
            return None, f"definition v{state.version} of '{self.name}' is no longer loaded"
        embedded = self._embedded[state.version]
        if state.status is not _SAGA_WAITING and state.sub_versions != embedded:
            return None, (
                f"it started with sub-saga versions {_versions(state.sub_versions)} but the "
                f"loaded v{state.version} of '{self.name}' embeds {_versions(embedded)}; "
                "load the definition it started with"
            )
        return definition, ""

    def handle(
        self, state: SagaState | None, incoming: Incoming, now: float, *, copy: bool = True
    ) -> Outcome:
        """Apply one input event to the saga it belongs to (``state`` None: never seen).

        ``copy=False``: the caller owns ``state`` (a private copy it drops unless the outcome is
        committed), so it is changed in place instead of copied first (~30 us a state)."""
        if state is None:
            state = SagaState(
                saga_id=incoming.saga_id,
                saga=self.name,
                version=self.latest.version,
                status=_SAGA_WAITING,
            )
        else:
            if incoming.event_id in state.seen_ids:
                return Outcome(state, changed=False)
            if copy:
                state = state.clone()
        outcome = Outcome(state)
        event = incoming.event
        definition, why = self._definition(state)
        if definition is None:
            outcome.logs.append(f"saga {state.saga_id}: ignoring {event.event_type}: {why}")
            outcome.changed = False
            return outcome
        seen = SeenEvent(
            id=incoming.event_id,
            type=event.event_type,
            payload=_payload(definition, state, event),
            at=now,
            occurred_at=incoming.occurred_at,
            source=incoming.source,
        )
        if state.status is _SAGA_WAITING:
            if seen.type == definition.start.event_type:
                self._start(definition, state, incoming, seen, now, outcome)
            else:
                self._buffer(definition, state, seen, now)
        else:
            self._apply(definition, state, seen, now, outcome)
        self._finish(definition, state, now)
        return outcome

    def tick(self, state: SagaState, now: float, *, copy: bool = True) -> Outcome:
        """Fire every deadline of ``state`` that is due at ``now`` (see :meth:`wake_at`);
        ``copy`` as for :meth:`handle`."""
        wake_at = self.wake_at(state)
        if wake_at is None or wake_at > now:
            return Outcome(state, changed=False)
        if state.status in TERMINAL:
            return Outcome(None)  # its retention passed: the changelog gets a tombstone
        definition, why = self._definition(state)
        if definition is None:
            return Outcome(
                None,
                logs=[
                    f"saga {state.saga_id} forgotten while {state.status}: {why}, and it "
                    f"cannot move without it; its retention ({self.latest.retention}) since "
                    "its last change passed"
                ],
            )
        if copy:
            state = state.clone()
        outcome = Outcome(state)
        if state.status is _SAGA_WAITING:
            outcome.state = None
            outcome.logs.append(
                f"saga {state.saga_id}: dropped {len(state.buffer)} event(s) whose start "
                f"({definition.start.event_type}) never arrived within {definition.orphan_ttl}"
            )
            return outcome
        if state.status is _SAGA_RUNNING:
            self._running_deadlines(definition, state, now, outcome)
        elif state.status is _SAGA_COMPENSATING:
            _stop_waiting(definition, state, now)
            self._compensation_deadline(definition, state, now, outcome)
            self._compensate_next(definition, state, now, outcome)
        self._finish(definition, state, now)
        return outcome

    # -- transitions ---------------------------------------------------------------------------

    def _start(
        self,
        definition: Saga,
        state: SagaState,
        incoming: Incoming,
        seen: SeenEvent,
        now: float,
        outcome: Outcome,
    ) -> None:
        buffered = state.buffer
        state.buffer = []
        state.expires_at = None
        state.status = _SAGA_RUNNING
        state.started_at = now
        state.start = seen
        state.trace = dict(incoming.trace)
        state.cause_id = seen.id
        state.sub_versions = definition.part_versions()
        state.remember(seen.id)
        if definition.deadline is not None:
            state.deadline_at = now + definition.deadline.total_seconds()
        skipped = self._decide(definition, state, incoming.event, seen, now, outcome)
        if skipped is None:
            for event in buffered:
                state.note(now, event.type, "recorded only: the saga is parked", event=event)
            return
        for placed in definition.placed:
            for part in placed.parts:
                state.steps.setdefault(part, StepState())
            state.steps[placed.step.name] = StepState(
                status=_STEP_SKIPPED if placed.step.name in skipped else _STEP_PENDING
            )
        for placed_part in definition.parts:
            if all(name in skipped for name in placed_part.steps):
                state.steps[placed_part.name].status = _STEP_SKIPPED
        versions = state.sub_versions
        state.note(
            now,
            seen.type,
            f"started under v{definition.version}"
            + (f" (sub-sagas {_versions(versions)})" if versions else "")
            + (f"; skipped {', '.join(skipped)}" if skipped else ""),
            event=seen,
        )
        self._activate(definition, state, now)
        # The start event may also settle a step (e.g. the order step of an order saga).
        self._apply(definition, state, seen, now, outcome, already_noted=True)
        for event in buffered:
            state.note(
                now,
                event.type,
                "replaying an event that arrived before the start",
                event=event,
            )
            self._apply(definition, state, event, now, outcome)

    def _decide(
        self,
        definition: Saga,
        state: SagaState,
        start: Event | Decoded,
        seen: SeenEvent,
        now: float,
        outcome: Outcome,
    ) -> list[str] | None:
        """The steps whose ``when`` is false; None (and the saga parked) if one raised."""
        skipped: list[str] = []
        for placed in definition.placed:
            condition = placed.step.when
            if condition is not None and isinstance(start, Decoded):
                start = start.model()
            try:
                if condition is not None and not condition(start):
                    skipped.append(placed.step.name)
            except Exception as error:  # user code: park this saga, not the tracker
                state.note(now, seen.type, "started, but a step condition raised", event=seen)
                self._park(
                    definition,
                    state,
                    placed.step.name,
                    f"the condition (when=) of step '{placed.step.name}' raised {_describe(error)}",
                    "The tracker no longer acts on this saga: fix the condition, then check "
                    "and finish the saga's steps by hand",
                    "start",
                    now,
                    outcome,
                )
                return None
        return skipped

    def _buffer(self, definition: Saga, state: SagaState, seen: SeenEvent, now: float) -> None:
        if state.expires_at is None:
            state.expires_at = now + definition.orphan_ttl.total_seconds()
        if len(state.buffer) < BUFFER_LIMIT:
            state.buffer.append(seen)
            state.note(now, seen.type, "buffered: the saga's start has not arrived yet", event=seen)
        else:
            state.note(
                now,
                seen.type,
                f"dropped: over {BUFFER_LIMIT} events before the start",
                event=seen,
            )
        state.remember(seen.id)

    def _apply(
        self,
        definition: Saga,
        state: SagaState,
        seen: SeenEvent,
        now: float,
        outcome: Outcome,
        *,
        already_noted: bool = False,
    ) -> None:
        """Route one event of a started saga by its role in the definition."""
        state.remember(seen.id)
        found = definition.role_of(seen.type)
        role = None if found is None else found.kind
        placed = None if found is None else found.placed
        name = placed.step.name if placed else (found.part if found else None)

        def note(action: str) -> None:
            state.note(now, seen.type, action, event=seen, step=name)

        if name is not None and name not in state.steps:
            note(f"recorded only: the saga is {state.status} and its steps were never decided")
            return
        if placed is None:
            if role == "completion":
                self._completion(state, name, seen, note)
            elif role == "abort":
                self._abort(_Routed(definition, state, seen, now, outcome, note))
                self._compensate_next(definition, state, now, outcome)
            elif not already_noted:
                note(f"ignored: the saga has already started ({role or 'unknown'} event)")
            return
        step = state.steps[placed.step.name]
        if state.status is _SAGA_FAILED and step.stalled and role != "compensated":
            state.status = _SAGA_RUNNING
            step.stalled = False
            note("un-parked: the silent step reported again")
            _arm_beat(step, placed.step, now)
        if role == "success":
            self._succeeded(_StepEvent(definition, state, seen, now, outcome, note, placed, step))
        elif role == "failure":
            assert found is not None
            event = _StepEvent(definition, state, seen, now, outcome, note, placed, step)
            self._failed(event, found.level)
        elif role == "progress":
            _progress(state, placed, step, now, note)
        elif role == "compensated":
            if step.status is _STEP_COMPENSATING:
                step.status = _STEP_COMPENSATED
                step.compensation_due_at = None
                note("compensation confirmed")
                if state.status is _SAGA_FAILED:
                    state.status = _SAGA_COMPENSATING
                    note("un-parked: the confirmation arrived after all")
            else:
                note(f"ignored: no compensation in flight for this step ({step.status})")
        self._compensate_next(definition, state, now, outcome)

    def _failed(self, ev: _StepEvent, level: int) -> None:
        """A failure event: fall back if the definition says so, else fail the step."""
        if ev.state.status is _SAGA_RUNNING and ev.step.status is not _STEP_SUCCEEDED:
            if level < ev.step.fallback:
                ev.note(f"ignored: the step already moved on to fallback {ev.step.fallback}")
                return
            fallbacks = ev.placed.step.fallbacks
            if level == ev.step.fallback < len(fallbacks) and ev.seen.type in {
                e.event_type for e in fallbacks[level].on
            }:
                self._fall_back(ev)
                return
            ev.step.status = _STEP_FAILED
            ev.step.beat_due_at = None
            ev.note("step failed")
            reason = f"step '{ev.placed.step.name}' failed ({ev.seen.type})"
            _fail_parts(ev.state, ev.placed, reason, ev.now)
            self._begin_compensation(ev.state, reason, ev.seen.id, ev.now)
        elif ev.state.status is _SAGA_COMPENSATING and ev.step.status is _STEP_PENDING:
            ev.step.status = _STEP_FAILED
            ev.step.due_at = ev.step.beat_due_at = None
            ev.note("step failed: no longer waiting for it")
        else:
            ev.note(f"ignored: step is {ev.step.status}, saga is {ev.state.status}")

    def _fall_back(self, ev: _StepEvent) -> None:
        """Emit the next fallback's command; the step waits again with fresh timers."""
        fallback = ev.placed.step.fallbacks[ev.step.fallback]
        ev.step.fallback += 1
        assert ev.state.start is not None
        at = datetime.fromtimestamp(ev.now, UTC)
        try:
            sources = [self._values(ev.seen), self._values(ev.state.start)]
            command = fill(fallback.command, sources, at)
        except Exception as error:  # the failure event's values do not fit the command
            ev.note("step failed")
            self._park(
                ev.definition,
                ev.state,
                ev.placed.step.name,
                f"building fallback {fallback.command.event_type} for step "
                f"'{ev.placed.step.name}' from {ev.seen.type} raised {_describe(error)}",
                "Fix the fallback's command or the failure event, then carry the step on by "
                "hand (publish its success or failure event)",
                ev.seen.type,
                ev.now,
                ev.outcome,
            )
            return
        name, attempt = ev.placed.step.name, ev.step.fallback
        reason = f"step '{name}' failed ({ev.seen.type})"
        what = f"{name}/fallback"
        ev.outcome.emits.append(_emit(ev.state, command, what, attempt, ev.seen.id, name, reason))
        ev.note(f"step failed: trying fallback {attempt}, emitted {fallback.command.event_type}")
        ev.step.due_at = None
        _arm(ev.step, ev.placed.step.deadline, ev.now)
        _arm_beat(ev.step, ev.placed.step, ev.now)

    def _abort(self, ev: _Routed) -> None:
        """A cancellation from outside: compensate a running saga, report a completed one."""
        try:
            fields = ev.seen.fields()
        except ValueError as error:  # a buffered abort, in a state someone else wrote
            fields = {"reason": f"its stored fields cannot be read: {error}"}
        by = str(fields.get("requested_by") or ev.seen.source or "unknown")
        why = str(fields.get("reason") or "no reason given")
        running = ev.state.status is _SAGA_RUNNING
        if not running and ev.state.status is not _SAGA_COMPLETED:
            ev.note(f"ignored: cancel requested by {by} ({why}) but the saga is {ev.state.status}")
            return
        if ev.state.cancel is None:
            ev.state.cancel = Cancellation(
                event_id=ev.seen.id,
                type=ev.seen.type,
                by=by,
                reason=why,
                at=ev.now,
                applied=running,
            )
        if running:
            ev.note(f"cancel requested by {by}: {why}")
            self._begin_compensation(ev.state, f"cancelled by {by}: {why}", ev.seen.id, ev.now)
            return
        ev.note(f"not applied: cancel requested by {by} ({why}) after the saga completed")
        ev.outcome.logs.append(
            f"saga '{ev.definition.name}' {ev.state.saga_id}: cancel requested by {by} ({why}) "
            f"arrived after the saga completed; not applied ({ev.seen.type} {ev.seen.id})"
        )

    def _completion(self, state: SagaState, part: str | None, seen: SeenEvent, note: Any) -> None:
        """The saga's completion event (``part`` None) or a sub-saga's."""
        if state.status is not _SAGA_RUNNING:
            note(f"ignored: the saga is {state.status}")
        elif part is None:
            state.completion_id = seen.id
            note("completion event received")
        elif state.steps[part].status is _STEP_PENDING:
            state.steps[part].result = seen
            note("sub-saga completion event received")
        else:
            note(f"ignored: the sub-saga is {state.steps[part].status}")

    def _succeeded(self, ev: _StepEvent) -> None:
        if ev.step.status in _UNDONE_OR_DONE:
            ev.note(f"ignored: step is already {ev.step.status}")
            return
        ev.step.status = _STEP_SUCCEEDED
        ev.step.result = ev.seen
        ev.step.due_at = ev.step.beat_due_at = None
        if ev.state.status is _SAGA_RUNNING:
            ev.note("step succeeded")
            self._activate(ev.definition, ev.state, ev.now)
        elif ev.state.status is _SAGA_COMPLETED:
            ev.note("ignored: the saga has completed")
        elif ev.placed.step.compensate is None:
            ev.note(f"step succeeded while the saga is {ev.state.status}; nothing to undo")
        else:
            ev.note(f"step succeeded while the saga is {ev.state.status}: it will be compensated")
            if ev.state.status is _SAGA_COMPENSATED:
                ev.state.status = _SAGA_COMPENSATING
        if ev.state.status is _SAGA_COMPENSATING:
            # The services went on from this success: the next stage may report too.
            self._activate(ev.definition, ev.state, ev.now)

    def _activate(self, definition: Saga, state: SagaState, now: float) -> None:
        """Start the deadlines of the first stage that is not done yet (and of its sub-sagas)."""
        steps = state.steps
        for members in definition.stages:
            open_members = [p for p in members if steps[p.step.name].status not in _UNDONE_OR_DONE]
            if not open_members:
                continue
            for p in open_members:
                step = steps[p.step.name]
                _arm(step, p.step.deadline, now)
                if step.beat_due_at is None:  # a sibling's success is not its progress
                    _arm_beat(step, p.step, now)
                for part in p.parts:
                    _arm(steps[part], definition.part(part).saga.deadline, now)
            return

    def _begin_compensation(self, state: SagaState, reason: str, cause_id: str, now: float) -> None:
        state.status = _SAGA_COMPENSATING
        state.reason = reason
        state.cause_id = cause_id
        state.note(now, "compensate", f"compensating: {reason}")

    def _compensate_next(
        self, definition: Saga, state: SagaState, now: float, outcome: Outcome
    ) -> None:
        """One compensation at a time: emit the next if none is awaiting confirmation and no
        activated step may still report (its success would have to be undone first)."""
        if state.status is not _SAGA_COMPENSATING:
            return
        if any(s.status is _STEP_COMPENSATING for s in state.steps.values()):
            return
        awaited = _awaited(definition, state)
        for placed in awaited:
            step = state.steps[placed.step.name]
            if step.due_at is None:  # no deadline of its own: wait one compensation deadline
                step.due_at = now + placed.step.compensation_deadline.total_seconds()
                state.note(
                    now, "compensate", "waiting for the step before undoing", step=placed.step.name
                )
        if awaited:
            return
        for placed in reversed(definition.placed):
            step = state.steps[placed.step.name]
            if step.status is _STEP_SUCCEEDED and placed.step.compensate is not None:
                step.status = _STEP_COMPENSATING
                self._emit_compensation(definition, state, placed, now, outcome)
                return
        state.status = _SAGA_COMPENSATED
        state.note(now, "compensate", "compensated: every completed step was undone")

    def _emit_compensation(
        self, definition: Saga, state: SagaState, placed: PlacedStep, now: float, outcome: Outcome
    ) -> None:
        step = state.steps[placed.step.name]
        compensate = placed.step.compensate
        assert compensate is not None and step.result is not None and state.start is not None
        step.attempts += 1
        reason = state.reason or "compensating"
        at = datetime.fromtimestamp(now, UTC)
        try:
            if placed.step.build is not None:
                start = self._model(state.start)
                result = self._model(step.result)
                event = placed.step.build(
                    CompensationInput(state.saga_id, start, result, reason, at)
                )
            else:
                event = self._fill_compensation(compensate, reason, step.result, state.start, at)
            if not isinstance(event, compensate):
                raise TypeError(f"it returned {type(event).__name__}, not {compensate.__name__}")
        except Exception as error:  # user code: park this saga, not the tracker
            step.compensation_due_at = None
            self._park(
                definition,
                state,
                placed.step.name,
                f"building {compensate.event_type} for step '{placed.step.name}' raised "
                f"{_describe(error)}; the saga was compensating because {reason}",
                "Fix the step's build= (the steps before it will need it too). "
                + _finish_by_hand(state, placed),
                "compensate",
                now,
                outcome,
            )
            return
        step.compensation_due_at = now + placed.step.compensation_deadline.total_seconds()
        # Every attempt has the first one's id: an idempotent consumer drops re-sends.
        name = placed.step.name
        outcome.emits.append(_emit(state, event, name, 1, state.cause_id, name, reason))
        attempt = f" (attempt {step.attempts})" if step.attempts > 1 else ""
        state.note(
            now, "compensate", f"emitted {compensate.event_type}{attempt}", step=placed.step.name
        )

    def _running_deadlines(
        self, definition: Saga, state: SagaState, now: float, outcome: Outcome
    ) -> None:
        if state.deadline_at is not None and state.deadline_at <= now:
            state.note(now, "deadline", "the saga's deadline passed")
            self._begin_compensation(state, "the saga's deadline passed", _start_id(state), now)
        else:
            for placed in definition.placed:
                step = state.steps[placed.step.name]
                if step.status is not _STEP_PENDING:
                    continue
                if step.due_at is not None and step.due_at <= now:
                    what, reason = "deadline", f"step '{placed.step.name}' missed its deadline"
                elif step.beat_due_at is not None and step.beat_due_at <= now:
                    what = "heartbeat"
                    reason = (
                        f"step '{placed.step.name}' sent no progress within its heartbeat "
                        f"({placed.step.heartbeat})"
                    )
                    if placed.step.on_silence == "park":
                        self._stall(definition, state, placed, reason, now, outcome)
                        break
                else:
                    continue
                step.status = _STEP_TIMED_OUT
                step.due_at = step.beat_due_at = None
                state.note(now, "deadline", f"the step's {what} passed", step=placed.step.name)
                _fail_parts(state, placed, reason, now)
                self._begin_compensation(state, reason, _start_id(state), now)
                break
            else:
                self._part_deadlines(definition, state, now)
        self._compensate_next(definition, state, now, outcome)

    def _stall(
        self,
        definition: Saga,
        state: SagaState,
        placed: PlacedStep,
        reason: str,
        now: float,
        outcome: Outcome,
    ) -> None:
        """``on_silence="park"``: hand the silent step to a person; it reporting un-parks."""
        step = state.steps[placed.step.name]
        step.stalled = True
        step.beat_due_at = None
        failures = ", ".join(e.event_type for _, e in placed.step.failures()) or "none"
        self._park(
            definition,
            state,
            placed.step.name,
            reason,
            "Check the service behind the step: when it reports again (progress, success or "
            f"failure) the tracker carries on; to give up, publish one of its failure events "
            f"({failures}) with correlation id {state.saga_id}",
            "deadline",
            now,
            outcome,
        )

    def _part_deadlines(self, definition: Saga, state: SagaState, now: float) -> None:
        for part in definition.parts:
            entry = state.steps[part.name]
            due = entry.due_at
            if entry.status is _STEP_PENDING and due is not None and due <= now:
                entry.status = _STEP_TIMED_OUT
                entry.due_at = None
                state.note(now, "deadline", "the sub-saga's deadline passed", step=part.name)
                reason = f"sub-saga '{part.name}' missed its deadline"
                self._begin_compensation(state, reason, _start_id(state), now)
                return

    def _compensation_deadline(
        self, definition: Saga, state: SagaState, now: float, outcome: Outcome
    ) -> None:
        for placed in definition.placed:
            step = state.steps[placed.step.name]
            due = step.compensation_due_at
            if step.status is not _STEP_COMPENSATING or due is None or due > now:
                continue
            if step.attempts <= placed.step.compensation_retries:
                state.note(
                    now,
                    "deadline",
                    "compensation not confirmed in time: re-emitting",
                    step=placed.step.name,
                )
                self._emit_compensation(definition, state, placed, now, outcome)
            else:
                step.compensation_due_at = None
                assert placed.step.compensate is not None
                self._park(
                    definition,
                    state,
                    placed.step.name,
                    f"{placed.step.compensate.event_type} for step '{placed.step.name}' was not "
                    f"confirmed after {step.attempts} attempt(s); the saga was compensating "
                    f"because {state.reason}",
                    _finish_by_hand(state, placed),
                    "deadline",
                    now,
                    outcome,
                )
            return

    def _fill_compensation(
        self,
        compensate: type[Event],
        reason: str,
        result: SeenEvent,
        start: SeenEvent,
        at: datetime,
    ) -> Event:
        """:func:`fill` from the step's result, then the start: from their stored payloads, as
        fallback commands are, when each holds every field of its model (~20 us less than
        validating both models first). An older state's payload may lack a field its newer
        model defaults, and a strict command may refuse text for a decimal or a time: then
        from the models, as always."""
        sources = [self._values(result), self._values(start)]
        if self._takes_text(compensate) and all(
            values.keys() == self.models[seen.type].model_fields.keys()
            for values, seen in zip(sources, (result, start), strict=True)
        ):
            try:
                return fill(compensate, [{"reason": reason}, *sources], at)
            except Exception:  # the models decide, as they always did
                pass
        models = [dict(self._model(result)), dict(self._model(start))]
        return fill(compensate, [{"reason": reason}, *models], at)

    def _takes_text(self, model: type[Event]) -> bool:
        """``model`` gives no code of its own the input as it came (no before, wrap or plain
        validator anywhere in its schema, nested models' included): such code could see the
        payloads' text where it saw a decimal, a time or bytes before, and fail or keep
        something else."""
        known = self._plain.get(model)
        if known is None:
            known = self._plain[model] = not _has_function(model.__pydantic_core_schema__)
        return known

    def _model(self, seen: SeenEvent) -> Event:
        return self.models[seen.type].model_validate(self._values(seen))

    def _values(self, seen: SeenEvent) -> Mapping[str, Any]:
        """A seen event's fields as its model validates them (:func:`payloads.values`)."""
        return payloads.values(seen.fields())

    def _park(
        self,
        definition: Saga,
        state: SagaState,
        step_name: str,
        reason: str,
        advice: str,
        trigger: str,
        now: float,
        outcome: Outcome,
    ) -> None:
        """Hand the saga to a person: ``failed``, a log line with ``advice``, the parked event."""
        state.status = _SAGA_FAILED
        state.note(now, trigger, f"parked: {reason}", step=step_name)
        outcome.logs.append(
            f"saga '{definition.name}' {state.saga_id} parked: {reason}. {advice}; "
            f"`choreo saga show {state.saga_id}` shows what was done"
        )
        if definition.parked is None:
            return
        step = state.steps.get(step_name)
        attempt = 0 if step is None else step.attempts
        # A step parked for silence, un-parked by its progress and silent again is parked
        # anew: its progress count tells the episodes apart, so each has its own event id
        # (an idempotent consumer would drop a second one under the first's), and the same
        # decision replayed after a crash still gets the same id.
        episode = f"@{step.progress}" if step is not None and step.progress else ""
        event = fill(
            definition.parked,
            [
                {
                    "saga_id": state.saga_id,
                    "saga": definition.name,
                    "version": definition.version,
                    "step": step_name,
                    "reason": reason,
                }
            ],
            datetime.fromtimestamp(now, UTC),
        )
        what = f"parked:{step_name}{episode}"
        outcome.emits.append(_emit(state, event, what, attempt, state.cause_id, step_name, reason))

    def _finish(self, definition: Saga, state: SagaState, now: float) -> None:
        """Complete when everything is done, and work out the next moment a timer matters."""
        _settle_parts(definition, state, now)
        status = state.status
        if (
            status is _SAGA_RUNNING
            and (not definition.completed or state.completion_id is not None)
            and all(s.status in _DONE for s in state.steps.values())
        ):
            status = state.status = _SAGA_COMPLETED
            state.note(now, "complete", "completed: every step succeeded")
        state.updated_at = now
        if status in TERMINAL:
            state.expires_at = now + definition.retention.total_seconds()
        elif status is not _SAGA_WAITING:
            state.expires_at = None
        state.wake_at = _wake_at(definition, state)


def _arm(step: StepState, deadline: timedelta | None, now: float) -> None:
    if step.status is _STEP_PENDING and step.due_at is None and deadline is not None:
        step.due_at = now + deadline.total_seconds()


def _arm_beat(step: StepState, definition: Step, now: float) -> None:
    """Start a pending step's heartbeat, or start it again (progress, a fallback)."""
    if step.status is _STEP_PENDING and definition.heartbeat is not None:
        step.beat_due_at = now + definition.heartbeat.total_seconds()


def _progress(state: SagaState, placed: PlacedStep, step: StepState, now: float, note: Any) -> None:
    """A progress event: counted, and it re-arms the heartbeat of a step still pending."""
    if step.status is not _STEP_PENDING or state.status is not _SAGA_RUNNING:
        note(f"progress recorded only: step is {step.status}, saga is {state.status}")
        return
    step.progress += 1
    step.progress_at = now
    _arm_beat(step, placed.step, now)
    note(
        f"progress {step.progress}"
        + ("" if placed.step.heartbeat is None else ": heartbeat re-armed")
    )


def _fail_parts(state: SagaState, placed: PlacedStep, reason: str, now: float) -> None:
    """A step that failed or timed out fails every sub-saga it belongs to."""
    for part in placed.parts:
        entry = state.steps[part]
        if entry.status is _STEP_PENDING:
            entry.status = _STEP_FAILED
            entry.due_at = None
            state.note(now, "sub-saga", f"sub-saga failed: {reason}", step=part)


def _settle_parts(definition: Saga, state: SagaState, now: float) -> None:
    """Sub-sagas whose steps are all done succeed; succeeded ones whose undo is done are
    compensated. Innermost first, so an outer sub-saga sees its inner ones settled."""
    if not definition.parts:
        return  # most sagas have none: skip the sort, run for every event
    for part in sorted(definition.parts, key=lambda p: -p.depth):
        entry = state.steps.get(part.name)
        if entry is None:
            continue  # parked before its steps were decided
        if entry.status is _STEP_PENDING and state.status is _SAGA_RUNNING:
            if _all_done(state, part) and (not part.saga.completed or entry.result is not None):
                entry.status = _STEP_SUCCEEDED
                entry.due_at = None
                state.note(now, "sub-saga", "sub-saga completed", step=part.name)
        elif entry.status is _STEP_SUCCEEDED and state.status is not _SAGA_RUNNING:
            inner = [definition.step(name) for name in part.steps]
            statuses = [state.steps[p.step.name].status for p in inner]
            undone = _STEP_COMPENSATED in statuses
            left = any(
                status is _STEP_COMPENSATING
                or (status is _STEP_SUCCEEDED and p.step.compensate is not None)
                for p, status in zip(inner, statuses, strict=True)
            )
            if undone and not left:
                entry.status = _STEP_COMPENSATED
                state.note(now, "sub-saga", "sub-saga compensated", step=part.name)


def _all_done(state: SagaState, part: PlacedPart) -> bool:
    return all(state.steps[name].status in _DONE for name in part.steps)


def _finish_by_hand(state: SagaState, placed: PlacedStep) -> str:
    return (
        f"To finish by hand: undo step '{placed.step.name}' and the completed steps before it, "
        f"or publish one of {', '.join(e.event_type for e in placed.step.compensated)} with "
        f"correlation id {state.saga_id} to let the tracker carry on"
    )


def _describe(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"


def _versions(versions: Mapping[str, int]) -> str:
    return ", ".join(f"{name} v{version}" for name, version in sorted(versions.items())) or "none"


def _awaited(definition: Saga, state: SagaState) -> list[PlacedStep]:
    """The activated steps that have not reported: the pending members of the first stage
    not done yet (stages run in order, so no later step can have been started)."""
    for members in definition.stages:
        if all(state.steps[p.step.name].status in _UNDONE_OR_DONE for p in members):
            continue
        return [p for p in members if state.steps[p.step.name].status is _STEP_PENDING]
    return []


def _stop_waiting(definition: Saga, state: SagaState, now: float) -> None:
    """A compensating saga gives up on awaited steps whose deadline passed (timed out)."""
    for placed in _awaited(definition, state):
        step = state.steps[placed.step.name]
        if step.due_at is not None and step.due_at <= now:
            step.status = _STEP_TIMED_OUT
            step.due_at = None
            state.note(
                now,
                "deadline",
                "stopped waiting: the step's deadline passed",
                step=placed.step.name,
            )


def _wake_at(definition: Saga, state: SagaState) -> float | None:
    status = state.status
    if status is _SAGA_WAITING or status in TERMINAL:
        return state.expires_at
    candidates: list[float | None] = []
    if status is _SAGA_RUNNING:
        candidates.append(state.deadline_at)
        for step in state.steps.values():
            if step.status is _STEP_PENDING:
                candidates += (step.due_at, step.beat_due_at)
    elif status is _SAGA_COMPENSATING:
        steps = state.steps
        candidates += [s.compensation_due_at for s in steps.values()]
        candidates += [steps[p.step.name].due_at for p in _awaited(definition, state)]
    due = [c for c in candidates if c is not None]
    return min(due) if due else None


def _payload(definition: Saga, state: SagaState, event: Event | Decoded) -> msgspec.Raw:
    """``event``'s fields as a :class:`SeenEvent` stores them, or ``{}`` for an event of a
    started saga whose role neither keeps nor reads them (a confirmation, progress, the saga's
    completion event, its start again): only the start, a step's result, a buffered event, an
    abort or a failure a fallback may be built from are read later, and the dump costs 1-7 us
    (``model_dump(mode="json")`` minus its wrapper's keywords)."""
    if state.status is not _SAGA_WAITING:
        role = definition.role_of(event.event_type)
        if role is not None and (
            role.kind in _PAYLOAD_UNREAD or (role.kind == "completion" and role.part is None)
        ):
            return NO_PAYLOAD
    if type(event) is Decoded:
        return payload_json(event.payload)
    return payload_json(payloads.dump(event))  # type: ignore[arg-type]  # not Decoded: an Event


_SEES_INPUT = frozenset({"function-before", "function-wrap", "function-plain"})
"""Validator functions given the input as it came; an ``after`` one gets the value pydantic
made of it, the same from text as from a decimal or a time."""


def _has_function(schema: object) -> bool:
    """A pydantic core schema holds a validator function that sees the input (``before``,
    ``wrap`` or ``plain``) somewhere."""
    if isinstance(schema, dict):
        if schema.get("type") in _SEES_INPUT:
            return True
        # How a value is written (a serializer) is not how it is validated.
        return any(_has_function(v) for k, v in schema.items() if k != "serialization")
    if isinstance(schema, list | tuple):
        return any(_has_function(item) for item in schema)
    return False


def _start_id(state: SagaState) -> str:
    return state.start.id if state.start is not None else state.saga_id


def _emit(
    state: SagaState,
    event: Event,
    what: str,
    attempt: int,
    cause: str | None,
    step: str,
    reason: str,
) -> Emit:
    """``event`` sent for the saga, in its trace: its id is fixed by ``what`` and ``attempt``,
    so the same decision taken again (after a crash) sends the same id."""
    return Emit(
        event=event,
        event_id=_event_id(state.saga_id, what, attempt),
        correlation_id=state.saga_id,
        causation_id=cause,
        trace=dict(state.trace),
        step=step,
        reason=reason,
    )


def _event_id(saga_id: str, what: str, attempt: int) -> str:
    """``str(uuid.uuid5(_IDS, ...))`` worked out on an int: the same id without building a
    ``UUID`` (its ``__init__`` checks its arguments in Python; ~3x the cost of this)."""
    digest = hashlib.sha1(_IDS_BYTES + f"{saga_id}/{what}/{attempt}".encode()).digest()
    value = int.from_bytes(digest[:16])
    value = value & ~(0xF000 << 64) | 5 << 76  # version 5 (name-based, SHA-1)
    value = value & ~(0xC000 << 48) | 0x8000 << 48  # the RFC 4122 variant
    hexa = f"{value:032x}"
    return f"{hexa[:8]}-{hexa[8:12]}-{hexa[12:16]}-{hexa[16:20]}-{hexa[20:]}"


def is_terminal(state: SagaState) -> bool:
    return state.status in TERMINAL
