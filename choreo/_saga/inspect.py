"""Read saga states back from the changelog and render them for people (``choreo saga``)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from confluent_kafka.admin import AdminClient

from choreo._saga.state import SagaState
from choreo._saga.store import read_changelog

CHANGELOG_PREFIX = "choreo.saga."
CHANGELOG_SUFFIX = ".state"


def changelogs(settings: Mapping[str, Any], saga: str | None = None) -> list[str]:
    """The changelog topics on the broker (one per saga name), or just ``saga``'s."""
    admin = AdminClient(dict(settings))
    topics = admin.list_topics(timeout=15).topics
    return sorted(
        name
        for name in topics
        if name.startswith(CHANGELOG_PREFIX)
        and name.endswith(CHANGELOG_SUFFIX)
        and (saga is None or name == f"{CHANGELOG_PREFIX}{saga}{CHANGELOG_SUFFIX}")
    )


def load_states(settings: Mapping[str, Any], saga: str | None = None) -> list[SagaState]:
    """The latest committed state of every saga, oldest update first."""
    states = [
        state
        for topic in changelogs(settings, saga)
        for partition in read_changelog(settings, topic).values()
        for state in partition.values()
    ]
    return sorted(states, key=lambda s: s.updated_at)


def _time(at: float | None) -> str:
    if at is None:
        return "-"
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def table(states: Iterable[SagaState]) -> str:
    rows = [("SAGA ID", "SAGA", "VERSION", "STATUS", "STARTED", "UPDATED", "REASON")]
    rows += [
        (
            s.saga_id,
            s.saga,
            f"v{s.version}",
            s.status.value,
            _time(s.started_at),
            _time(s.updated_at),
            s.reason or "",
        )
        for s in states
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=False))
        + "  "
        + row[-1]
        for row in rows
    ).rstrip()


def timeline(state: SagaState) -> str:
    lines = [
        f"saga {state.saga_id}: '{state.saga}' v{state.version}, {state.status.value}",
        f"  started {_time(state.started_at)}  deadline {_time(state.deadline_at)}"
        f"  next timer {_time(state.wake_at)}",
    ]
    if state.reason:
        lines.append(f"  compensating because {state.reason}")
    cancel = state.cancel
    if cancel is not None:
        verdict = "applied" if cancel.applied else "NOT applied: the saga had completed"
        lines.append(
            f"  cancel requested by {cancel.by} at {_time(cancel.at)}: {cancel.reason} "
            f"({cancel.type} {cancel.event_id}; {verdict})"
        )
    lines.append("  steps")
    for name, step_state in state.steps.items():
        extra = f", {step_state.attempts} compensation attempt(s)" if step_state.attempts else ""
        if step_state.fallback:
            extra += f", fallback {step_state.fallback} tried"
        if step_state.progress:
            extra += f", {step_state.progress} progress (last {_time(step_state.progress_at)})"
        if step_state.beat_due_at is not None:
            extra += f", heartbeat due {_time(step_state.beat_due_at)}"
        if step_state.stalled:
            extra += ", stalled: parked for a person"
        if name in state.sub_versions:
            extra += f" (sub-saga v{state.sub_versions[name]})"
        lines.append(f"    {name:<24} {step_state.status.value}{extra}")
    lines.append("  history (HANDLED: when the tracker acted; EVENT TIME: the event's ce_time)")
    lines.append(f"    {'HANDLED':<23}  {'EVENT TIME':<23}  {'TRIGGER':<36} ACTION")
    for entry in state.history:
        step = f" [{entry.step}]" if entry.step else ""
        lines.append(
            f"    {_time(entry.at):<23}  {_time(entry.occurred_at):<23}  "
            f"{entry.trigger:<36}{step} {entry.action}"
        )
    return "\n".join(lines)
