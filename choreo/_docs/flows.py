"""The edges both diagrams draw: who writes which events to a topic, who reads which from it."""

from __future__ import annotations

from dataclasses import dataclass

from choreo._docs.model import System
from choreo._saga.definition import PlacedStep, Saga


@dataclass(frozen=True)
class Flow:
    application: str
    topic: str
    events: tuple[str, ...]
    """Short event names, sorted; empty for raw (non-catalog) records."""


def short(event_type: str) -> str:
    return event_type.rsplit(".", 1)[-1]


def writes(system: System) -> list[Flow]:
    found: dict[tuple[str, str], set[str]] = {}
    for app in system.applications:
        for event_type in app.emits:
            found.setdefault((app.name, system.topic_of(event_type)), set()).add(short(event_type))
    return [Flow(a, t, tuple(sorted(e))) for (a, t), e in sorted(found.items())]


def reads(system: System) -> list[Flow]:
    """What services handle. A saga tracker reads every event of its saga; drawing that would
    hide the choreography, so its inputs are shown in the saga's own diagram instead."""
    found: dict[tuple[str, str], set[str]] = {}
    for app in system.applications:
        if app.kind == "saga tracker":
            continue
        for handling in app.handles:
            events = found.setdefault((app.name, handling.topic), set())
            if handling.event_type is not None:
                events.add(short(handling.event_type))
    return [Flow(a, t, tuple(sorted(e))) for (a, t), e in sorted(found.items())]


def topics(system: System) -> list[str]:
    """Topics some application reads or writes, sorted."""
    return sorted({flow.topic for flow in (*writes(system), *reads(system))})


def from_outside(system: System) -> list[str]:
    """Event types handled here that no application here emits (people, other systems)."""
    emitted = {e for app in system.applications for e in app.emits}
    handled = {h.event_type for app in system.applications for h in app.handles if h.event_type}
    return sorted(handled - emitted)


def stages(saga: Saga) -> list[list[PlacedStep]]:
    """Steps grouped by stage, in order; a stage of several steps runs in parallel."""
    grouped: dict[int, list[PlacedStep]] = {}
    for placed in saga.placed:
        grouped.setdefault(placed.stage, []).append(placed)
    return [grouped[stage] for stage in sorted(grouped)]


def step_lines(placed: PlacedStep) -> list[str]:
    """A step's name, the events that settle it, and the command that undoes it."""
    step = placed.step
    lines = [step.name, "ok:   " + ", ".join(short(e.event_type) for e in step.success)]
    if step.failure:
        lines.append("fail: " + ", ".join(short(e.event_type) for e in step.failure))
    if step.compensate is not None:
        lines.append(f"undo: {short(step.compensate.event_type)}")
    if step.when is not None:
        lines.append("(only when its condition holds)")
    return lines
