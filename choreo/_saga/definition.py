"""Saga definitions: which events mean a step succeeded, failed or was undone, and how to undo it.

A definition only *describes* the transaction. The services still react to each other's events
on their own (choreography); the tracker watches those events and steps in only to undo work
when something fails or takes too long. So a step names the events it is waiting for, never a
command to start it; the one command a step carries is its compensation.

Three controls for long-running transactions: a saga lists ``abort`` events (a customer's
cancellation) that compensate it from outside; a step lists ``progress`` events and a
``heartbeat`` interval, so a long step is given up (or parked) when it goes silent rather than
at a fixed deadline; a step lists :class:`Fallback` commands the tracker tries, in order,
when it fails, before the saga compensates. The tracker emits a fallback command: it is the
one place it asks a service for work, and only as the definition's written alternative.

A saga can use another saga as one of its steps (:class:`SubSaga`): its steps are tracked as
part of the outer saga under qualified names (``payment/charge``), so compensation, deadlines
and timelines treat them like the outer saga's own steps.

Everything that can be wrong with a definition is checked by :meth:`Saga.validate` against the
catalog when the tracker starts, with errors naming the saga and the step.
"""

from __future__ import annotations

import typing
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from pydantic import AwareDatetime, NaiveDatetime

from choreo._config import is_plain_name
from choreo._errors import TopologyError
from choreo._schemas import Catalog, Event

DEFAULT_COMPENSATION_DEADLINE = timedelta(seconds=30)
DEFAULT_COMPENSATION_RETRIES = 3
DEFAULT_ORPHAN_TTL = timedelta(seconds=60)
DEFAULT_RETENTION = timedelta(days=1)


@dataclass(frozen=True)
class CompensationInput:
    """What a compensation builder gets: the start event, the step's result and why we undo."""

    saga_id: str
    start: Event
    result: Event
    """The success event of the step being compensated."""
    reason: str
    now: datetime


Builder = Callable[[CompensationInput], Event]
Condition = Callable[[Any], bool]
SILENCE_ACTIONS = ("fail", "park")
"""What a step's missed heartbeat does: fail the step (compensate) or park the saga."""


@dataclass(frozen=True)
class Fallback:
    """An alternative the tracker tries when a step fails with one of ``on`` (carrier A
    refused: ask carrier B), before the saga compensates.

    The tracker emits ``command``, its fields filled by name from the failure event, then the
    start event (timestamps default to now). One of ``success`` settles the step (the step's
    ``compensate`` must be buildable from it); one of ``failure`` fails it, unless the next
    fallback of the step lists it in its own ``on`` (a chain). The step's ``deadline`` and
    ``heartbeat`` are counted again from the moment the command is emitted.
    """

    on: Sequence[type[Event]]
    command: type[Event]
    success: Sequence[type[Event]]
    failure: Sequence[type[Event]] = ()


@dataclass(frozen=True)
class Step:
    """One piece of work a service does on its own, as seen by the tracker.

    ``success``/``failure``: event types that settle the step. ``compensate``: the command the
    tracker emits to undo the step after a later failure, confirmed by one of ``compensated``
    (re-emitted up to ``compensation_retries`` times, each after ``compensation_deadline``).
    A step with nothing to undo (a check, an approval) says so with
    ``needs_compensation=False``, so a forgotten compensation is an error, not a silent gap.
    ``deadline`` counts from when the step becomes due (the steps before it succeeded).
    ``when`` takes the start event; a step whose condition is false is skipped (decided once,
    at start, so a saga never changes course halfway). ``build`` makes the compensation
    event; by default its fields are copied by name from the step's success event, then the
    start event, with ``reason`` and any missing timestamp filled in.

    ``progress``: events a long step sends while it works (shipment in transit); each one
    re-arms the step's ``heartbeat`` timer, armed when the step becomes due. No progress (nor
    a result) within ``heartbeat`` and ``on_silence="fail"`` counts as the step's failure;
    ``"park"`` parks the saga for a person instead (the parked event), and the step reporting
    again (progress, success or failure) un-parks it. ``fallbacks``: tried in order when the
    step fails (see :class:`Fallback`).
    """

    name: str
    success: Sequence[type[Event]]
    failure: Sequence[type[Event]] = ()
    compensate: type[Event] | None = None
    compensated: Sequence[type[Event]] = ()
    deadline: timedelta | None = None
    when: Condition | None = None
    needs_compensation: bool = True
    compensation_deadline: timedelta = DEFAULT_COMPENSATION_DEADLINE
    compensation_retries: int = DEFAULT_COMPENSATION_RETRIES
    build: Builder | None = None
    progress: Sequence[type[Event]] = ()
    heartbeat: timedelta | None = None
    on_silence: str = "fail"
    fallbacks: Sequence[Fallback] = ()

    def successes(self) -> list[type[Event]]:
        """The events that settle the step as succeeded: its own and its fallbacks' (once)."""
        found: list[type[Event]] = []
        for event in (*self.success, *(e for f in self.fallbacks for e in f.success)):
            if event not in found:
                found.append(event)
        return found

    def failures(self) -> Iterator[tuple[int, type[Event]]]:
        """(level, event): level 0 is the step's own failure, n the n-th fallback's."""
        for level, events in enumerate((self.failure, *(f.failure for f in self.fallbacks))):
            for event in events:
                yield level, event


@dataclass(frozen=True)
class Parallel:
    """Steps that run at the same time; the group succeeds when all members have.

    If one member fails, the members that succeeded are compensated like any other step.
    """

    steps: Sequence[Step]


@dataclass(frozen=True)
class SubSaga:
    """Another saga definition used as one step of this one.

    Its steps become steps of the outer saga, named ``<name>/<step>`` (``name`` defaults to
    the sub-saga's name), run in its order where the ``SubSaga`` stands, and are compensated
    in reverse like any other step when the outer saga compensates. The sub-saga fails (so the
    outer step failed) when one of its steps fails or misses its deadline, or when its own
    ``deadline`` passes, counted from when it becomes due. It succeeds when all its steps did
    and, if it lists ``completed`` events, one of them arrived. It starts with the outer
    saga, so its ``start`` must be the outer saga's start event type (its ``when`` conditions
    and compensation builders get that event). ``when`` skips the whole sub-saga. Its
    ``parked`` event is not used: the outer saga parks. A saga in flight keeps the sub-saga
    version its outer version embedded when it started.
    """

    saga: Saga
    name: str | None = None
    when: Condition | None = None

    @property
    def label(self) -> str:
        return self.name or self.saga.name


@dataclass(frozen=True)
class PlacedStep:
    """A step with its position: ``stage`` orders groups, ``index`` orders all steps.

    ``parts``: the qualified names of the sub-sagas the step belongs to, outermost first.
    """

    step: Step
    stage: int
    index: int
    parts: tuple[str, ...] = ()


@dataclass(frozen=True)
class PlacedPart:
    """A sub-saga inside a definition: its qualified name and the steps it consists of."""

    name: str
    saga: Saga
    steps: tuple[str, ...]
    depth: int


@dataclass(frozen=True)
class Role:
    """What an input event means for a definition: ``kind`` is start, success, failure,
    compensated, progress, abort, completion (of the saga, or of the sub-saga ``part``).
    ``level``: for a failure, 0 (the step's own) or the fallback it answers (1 = the first)."""

    kind: str
    placed: PlacedStep | None = None
    part: str | None = None
    level: int = 0


@dataclass(frozen=True)
class Saga:
    """A named, versioned saga definition (see the module docstring for the rules).

    ``start``: the event type that begins an instance; its correlation id is the saga id.
    ``deadline``: the whole saga must reach ``completed`` by then, else it is compensated.
    ``completed``: optional events that confirm the end (all steps must also have succeeded).
    ``abort``: events that cancel a running saga from outside (correlated like any input):
    what succeeded is compensated, in reverse; one arriving after completion is reported
    (``choreo saga show``, a log line), not applied. Who and why are read from its fields
    ``requested_by`` and ``reason`` when it has them (else its ``ce_source`` header).
    ``parked``: the event emitted when a compensation is never confirmed (fields filled by
    name from saga_id, saga, version, step, reason and a timestamp), e.g. ``SagaFailed``.
    ``orphan_ttl``: how long events that arrive before their saga's start are kept.
    ``retention``: how long a finished (completed, compensated or failed) saga's state is kept
    for ``choreo saga show`` before it is deleted from the changelog; an event for it arriving
    later is treated like one whose start was never seen.
    """

    name: str
    version: int
    start: type[Event]
    steps: Sequence[Step | Parallel | SubSaga]
    deadline: timedelta | None = None
    completed: Sequence[type[Event]] = ()
    parked: type[Event] | None = None
    abort: Sequence[type[Event]] = ()
    orphan_ttl: timedelta = DEFAULT_ORPHAN_TTL
    retention: timedelta = DEFAULT_RETENTION
    _placed: tuple[PlacedStep, ...] = field(init=False, repr=False, compare=False)
    _parts: tuple[PlacedPart, ...] = field(init=False, repr=False, compare=False)
    _stages: tuple[tuple[PlacedStep, ...], ...] = field(init=False, repr=False, compare=False)
    _roles: dict[str, Role] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        placed: list[PlacedStep] = []
        parts: list[PlacedPart] = []
        stage = 0
        for item in self.steps:
            if isinstance(item, SubSaga):
                stage = _place_sub_saga(item, stage, placed, parts)
                continue
            members = item.steps if isinstance(item, Parallel) else [item]
            for step in members:
                placed.append(PlacedStep(step, stage, len(placed)))
            stage += 1
        stages: dict[int, list[PlacedStep]] = {}
        for p in placed:
            stages.setdefault(p.stage, []).append(p)
        object.__setattr__(self, "_placed", tuple(placed))
        object.__setattr__(self, "_parts", tuple(parts))
        object.__setattr__(self, "_stages", tuple(tuple(s) for _, s in sorted(stages.items())))
        object.__setattr__(self, "_roles", self._index_roles())

    def _index_roles(self) -> dict[str, Role]:
        """Event type → role, first claim wins (``validate`` rejects a second claim)."""
        roles: dict[str, Role] = {}
        for p in self._placed:
            for kind, events in (
                ("success", p.step.successes()),
                ("compensated", p.step.compensated),
                ("progress", p.step.progress),
            ):
                for event in events:
                    roles.setdefault(event.event_type, Role(kind, p))
            for level, event in p.step.failures():
                roles.setdefault(event.event_type, Role("failure", p, level=level))
        for part in self._parts:
            for event in part.saga.completed:
                roles.setdefault(event.event_type, Role("completion", part=part.name))
        for event in self.completed:
            roles.setdefault(event.event_type, Role("completion"))
        for event in self.abort:
            roles.setdefault(event.event_type, Role("abort"))
        roles.setdefault(self.start.event_type, Role("start"))
        return roles

    @property
    def placed(self) -> tuple[PlacedStep, ...]:
        """Every step in definition order (members of a group in their listed order)."""
        return self._placed

    @property
    def parts(self) -> tuple[PlacedPart, ...]:
        """Every sub-saga, nested ones included, in definition order."""
        return self._parts

    @property
    def stages(self) -> tuple[tuple[PlacedStep, ...], ...]:
        """The steps grouped by stage, in order: a stage is due once the ones before are done."""
        return self._stages

    def part_versions(self) -> dict[str, int]:
        """The version of each embedded sub-saga: stored with a saga to pin what it runs."""
        return {part.name: part.saga.version for part in self._parts}

    def role_of(self, event_type: str) -> Role | None:
        return self._roles.get(event_type)

    def step(self, name: str) -> PlacedStep:
        for placed in self._placed:
            if placed.step.name == name:
                return placed
        raise KeyError(name)

    def part(self, name: str) -> PlacedPart:
        for part in self._parts:
            if part.name == name:
                return part
        raise KeyError(name)

    def event_types(self) -> Iterator[type[Event]]:
        """Every event type the tracker consumes for this saga (its input)."""
        yield self.start
        yield from self.completed
        yield from self.abort
        for part in self._parts:
            yield from part.saga.completed
        for placed in self._placed:
            yield from placed.step.successes()
            yield from (event for _, event in placed.step.failures())
            yield from placed.step.compensated
            yield from placed.step.progress

    def emitted_types(self) -> Iterator[type[Event]]:
        """Every event type the tracker may emit for this saga."""
        for placed in self._placed:
            if placed.step.compensate is not None:
                yield placed.step.compensate
            yield from (fallback.command for fallback in placed.step.fallbacks)
        if self.parked is not None:
            yield self.parked

    def validate(self, catalog: Catalog) -> None:
        """Raise :class:`TopologyError` naming the saga and step for anything that cannot work."""
        where = f"saga '{self.name}' v{self.version}"
        if not is_plain_name(self.name):
            # It names the tracker's DLQ topics (choreo.dlq.choreo-saga-<name>.<topic>): a dot
            # would let two sagas' DLQ names meet, and replay derives the topic from the name.
            raise TopologyError(f"{where}: a saga name is letters, digits, '-' or '_'")
        if not self._placed:
            raise TopologyError(f"{where} has no steps")
        names = [p.step.name for p in self._placed]
        duplicate = next((n for n in names if names.count(n) > 1), None)
        if duplicate is not None:
            raise TopologyError(f"{where}: two steps are named '{duplicate}'")
        _in_catalog(catalog, f"{where}: start event", self.start)
        for event in self.completed:
            _in_catalog(catalog, f"{where}: completion event", event)
        if self.parked is not None:
            _in_catalog(catalog, f"{where}: parked event", self.parked)
            _fillable(
                self.parked,
                {"saga_id", "saga", "version", "step", "reason"},
                f"{where}: parked event",
            )
        owner: dict[str, str] = {}
        for event in self.abort:
            _in_catalog(catalog, f"{where}: abort event", event)
            if event is self.start or event in self.completed:
                raise TopologyError(
                    f"{where}: abort event {event.event_type} also starts or completes the saga"
                )
            owner[event.event_type] = "abort"
        for placed in self._placed:
            _validate_step(catalog, where, self.start, placed.step, owner)
        for part in self._parts:
            _validate_part(catalog, where, self, part, owner)


def _place_sub_saga(
    sub: SubSaga, stage: int, placed: list[PlacedStep], parts: list[PlacedPart]
) -> int:
    """Append ``sub``'s (already flattened) steps under ``<name>/``; returns the next stage."""
    name = sub.label
    parts.append(
        PlacedPart(name, sub.saga, tuple(f"{name}/{p.step.name}" for p in sub.saga.placed), 1)
    )
    for inner in sub.saga.placed:
        step = replace(
            inner.step, name=f"{name}/{inner.step.name}", when=_both(sub.when, inner.step.when)
        )
        within = (name, *(f"{name}/{part}" for part in inner.parts))
        placed.append(PlacedStep(step, stage + inner.stage, len(placed), within))
    parts += [
        PlacedPart(
            f"{name}/{part.name}",
            part.saga,
            tuple(f"{name}/{step}" for step in part.steps),
            part.depth + 1,
        )
        for part in sub.saga.parts
    ]
    return stage + len(sub.saga.stages)


def _both(first: Condition | None, second: Condition | None) -> Condition | None:
    """A sub-saga's condition and its step's own: the step runs only when both hold."""
    if first is None or second is None:
        return first or second
    return lambda start: first(start) and second(start)


def _validate_part(
    catalog: Catalog, where: str, outer: Saga, part: PlacedPart, owner: dict[str, str]
) -> None:
    at = f"{where} sub-saga '{part.name}' ('{part.saga.name}' v{part.saga.version})"
    if not part.steps:
        raise TopologyError(f"{at} has no steps")
    if part.saga.start is not outer.start:
        raise TopologyError(
            f"{at} starts with {part.saga.start.event_type}, but a sub-saga starts with its "
            f"outer saga, which starts with {outer.start.event_type}"
        )
    for event in part.saga.completed:
        _in_catalog(catalog, f"{at}: completion event", event)
        if event in outer.completed:
            raise TopologyError(
                f"{at}: {event.event_type} also completes the outer saga; a sub-saga's "
                "completion event must be its own"
            )
        if event.event_type in owner:
            raise TopologyError(
                f"{at}: {event.event_type} is already used by step '{owner[event.event_type]}'"
            )
        owner[event.event_type] = part.name


def _validate_step(
    catalog: Catalog, where: str, start: type[Event], step: Step, owner: dict[str, str]
) -> None:
    at = f"{where} step '{step.name}'"
    if not step.success:
        raise TopologyError(f"{at} lists no success event")
    _validate_controls(catalog, at, start, step)
    for kind, events in (
        ("success", step.successes()),
        ("failure", [event for _, event in step.failures()]),
        ("compensated", step.compensated),
        ("progress", step.progress),
    ):
        for event in events:
            _in_catalog(catalog, f"{at}: {kind} event", event)
            # An event that settles two steps would make the tracker guess which one it meant.
            if event.event_type in owner and event is not start:
                raise TopologyError(
                    f"{at}: {event.event_type} is already used by step '{owner[event.event_type]}'"
                )
            owner[event.event_type] = step.name
    if step.compensate is None:
        if step.needs_compensation:
            raise TopologyError(
                f"{at} has no compensation; pass compensate=<command event> "
                "or needs_compensation=False if there is nothing to undo"
            )
        return
    _in_catalog(catalog, f"{at}: compensation", step.compensate)
    if not step.compensated:
        raise TopologyError(
            f"{at} compensates with {step.compensate.event_type} but lists no "
            "compensated=[...] event confirming it"
        )
    if step.compensation_retries < 0:
        raise TopologyError(f"{at}: compensation_retries must be >= 0")
    if step.build is None:
        # Each success event must, with the start event, fill the compensation on its own.
        for success in step.successes():
            _fillable(
                step.compensate,
                set(success.model_fields) | set(start.model_fields) | {"reason"},
                f"{at}: compensation (from {success.event_type} and {start.event_type})",
            )


def _validate_controls(catalog: Catalog, at: str, start: type[Event], step: Step) -> None:
    """The heartbeat and the fallback chain of a step."""
    if step.heartbeat is not None and step.heartbeat <= timedelta(0):
        raise TopologyError(f"{at}: heartbeat must be positive, got {step.heartbeat}")
    if step.on_silence not in SILENCE_ACTIONS:
        raise TopologyError(
            f"{at}: on_silence is one of {', '.join(SILENCE_ACTIONS)}, got {step.on_silence!r}"
        )
    previous = list(step.failure)
    for number, fallback in enumerate(step.fallbacks, 1):
        where = f"{at} fallback {number} ({getattr(fallback.command, 'event_type', '?')})"
        _in_catalog(catalog, f"{where}: command", fallback.command)
        if not fallback.on or not fallback.success:
            raise TopologyError(f"{where} needs on=[...] and success=[...] events")
        for event in fallback.on:
            if event not in previous:
                raise TopologyError(
                    f"{where}: {event.event_type} in on=[...] is not a failure event of "
                    f"{'the step' if number == 1 else f'fallback {number - 1}'}"
                )
            _fillable(
                fallback.command,
                set(event.model_fields) | set(start.model_fields),
                f"{where}: command (from {event.event_type} and {start.event_type})",
            )
        previous = list(fallback.failure)


def _in_catalog(catalog: Catalog, what: str, event: type[Event]) -> None:
    event_type = getattr(event, "event_type", None)
    if not isinstance(event_type, str):
        raise TopologyError(f"{what} {event!r} is not an event model")
    if event_type not in catalog.event_types:
        raise TopologyError(f"{what} {event_type} is not in the catalog")
    catalog.topic_of(event_type)  # raises TopologyError naming the event when no topic has it


def _fillable(model: type[Event], available: set[str], what: str) -> None:
    """Every required field of ``model`` has a source, or the default builder would fail later."""
    for name, info in model.model_fields.items():
        if not info.is_required() or name in available or _is_datetime(info.annotation):
            continue
        raise TopologyError(
            f"{what} {model.event_type}: no source for required field '{name}'; "
            "pass build=... to the step"
        )


def _is_datetime(annotation: Any) -> bool:
    """``datetime`` or pydantic's ``AwareDatetime``/``NaiveDatetime`` (which are not subclasses)."""
    base = typing.get_args(annotation)[0] if typing.get_origin(annotation) else annotation
    if base in (AwareDatetime, NaiveDatetime):
        return True
    return isinstance(base, type) and issubclass(base, datetime)


def fill(model: type[Event], sources: Sequence[Mapping[str, Any]], now: datetime) -> Event:
    """Build ``model`` from the first source that has each field; timestamps default to now."""
    values: dict[str, Any] = {}
    for name, info in model.model_fields.items():
        source = next((s for s in sources if name in s), None)
        if source is not None:
            values[name] = source[name]
        elif info.is_required() and _is_datetime(info.annotation):
            values[name] = now
    return model.model_validate(values)
