"""Saga definitions: which events mean a step succeeded, failed or was undone, and how to undo it.

A definition only *describes* the transaction. The services still react to each other's events
on their own (choreography); the tracker watches those events and steps in only to undo work
when something fails or takes too long. So a step names the events it is waiting for, never a
command to start it; the one command a step carries is its compensation.

Everything that can be wrong with a definition is checked by :meth:`Saga.validate` against the
catalog when the tracker starts, with errors naming the saga and the step.
"""

from __future__ import annotations

import typing
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from pydantic import AwareDatetime, NaiveDatetime

from choreo._errors import TopologyError
from choreo._schemas import Catalog, Event

DEFAULT_COMPENSATION_DEADLINE = timedelta(seconds=30)
DEFAULT_COMPENSATION_RETRIES = 3
DEFAULT_ORPHAN_TTL = timedelta(seconds=60)


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


@dataclass(frozen=True)
class Parallel:
    """Steps that run at the same time; the group succeeds when all members have.

    If one member fails, the members that succeeded are compensated like any other step.
    """

    steps: Sequence[Step]


@dataclass(frozen=True)
class PlacedStep:
    """A step with its position: ``stage`` orders groups, ``index`` orders all steps."""

    step: Step
    stage: int
    index: int


@dataclass(frozen=True)
class Saga:
    """A named, versioned saga definition (see the module docstring for the rules).

    ``start``: the event type that begins an instance; its correlation id is the saga id.
    ``deadline``: the whole saga must reach ``completed`` by then, else it is compensated.
    ``completed``: optional events that confirm the end (all steps must also have succeeded).
    ``parked``: the event emitted when a compensation is never confirmed (fields filled by
    name from saga_id, saga, version, step, reason and a timestamp), e.g. ``SagaFailed``.
    ``orphan_ttl``: how long events that arrive before their saga's start are kept.
    """

    name: str
    version: int
    start: type[Event]
    steps: Sequence[Step | Parallel]
    deadline: timedelta | None = None
    completed: Sequence[type[Event]] = ()
    parked: type[Event] | None = None
    orphan_ttl: timedelta = DEFAULT_ORPHAN_TTL
    _placed: tuple[PlacedStep, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        placed: list[PlacedStep] = []
        for stage, item in enumerate(self.steps):
            members = item.steps if isinstance(item, Parallel) else [item]
            for step in members:
                placed.append(PlacedStep(step, stage, len(placed)))
        object.__setattr__(self, "_placed", tuple(placed))

    @property
    def placed(self) -> tuple[PlacedStep, ...]:
        """Every step in definition order (members of a group in their listed order)."""
        return self._placed

    def step(self, name: str) -> PlacedStep:
        for placed in self._placed:
            if placed.step.name == name:
                return placed
        raise KeyError(name)

    def event_types(self) -> Iterator[type[Event]]:
        """Every event type the tracker consumes for this saga (its input)."""
        yield self.start
        yield from self.completed
        for placed in self._placed:
            yield from placed.step.success
            yield from placed.step.failure
            yield from placed.step.compensated

    def emitted_types(self) -> Iterator[type[Event]]:
        """Every event type the tracker may emit for this saga."""
        for placed in self._placed:
            if placed.step.compensate is not None:
                yield placed.step.compensate
        if self.parked is not None:
            yield self.parked

    def validate(self, catalog: Catalog) -> None:
        """Raise :class:`TopologyError` naming the saga and step for anything that cannot work."""
        where = f"saga '{self.name}' v{self.version}"
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
        for placed in self._placed:
            _validate_step(catalog, where, self.start, placed.step, owner)

    def all_members_of(self, stage: int) -> list[PlacedStep]:
        return [p for p in self._placed if p.stage == stage]


def _validate_step(
    catalog: Catalog, where: str, start: type[Event], step: Step, owner: dict[str, str]
) -> None:
    at = f"{where} step '{step.name}'"
    if not step.success:
        raise TopologyError(f"{at} lists no success event")
    for kind, events in (
        ("success", step.success),
        ("failure", step.failure),
        ("compensated", step.compensated),
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
        for success in step.success:
            _fillable(
                step.compensate,
                set(success.model_fields) | set(start.model_fields) | {"reason"},
                f"{at}: compensation (from {success.event_type} and {start.event_type})",
            )


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
