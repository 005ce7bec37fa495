"""One saga's page: its timeline as a picture, its steps, history and raw events.

The picture has one lane per step (a sub-saga's steps indented under it, the members of a
parallel group bracketed side by side when the definition is known) on one time axis: each
event the tracker handled is a dot at the time it handled it, joined to a ring at the
event's own time (``ce_time``); failures are red, compensations sent are orange diamonds and
their confirmations orange dots; deadlines are dashed lines (or named at the right edge when
they lie beyond the picture).

Fields this console does not know (a newer tracker's) are listed as they are, not dropped.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import msgspec

from choreo._console.html import esc, table, when
from choreo._saga.definition import Saga
from choreo._saga.state import HistoryEntry, SagaState

WIDTH = 960
LABEL = 230
LANE = 26
CONFIRMED = "compensation confirmed"
SAGA_DRAWN = frozenset(
    {"saga_id", "saga", "version", "status", "started_at", "deadline_at", "start", "trace",
     "steps", "reason", "buffer", "wake_at", "updated_at", "history", "seen_ids"}
)  # fmt: skip
"""The state's fields this page draws; any other one (a newer tracker's: aborts, heartbeats,
fallbacks) is listed as it is, so additions show up without a console release."""
STEP_DRAWN = frozenset({"status", "due_at", "result", "attempts", "compensation_due_at"})
EMPTY: tuple[object, ...] = (None, 0, False, "", [], {})


@dataclass(frozen=True)
class Lane:
    name: str
    label: str
    group: int | None
    """Parallel group (stage) shared with the lanes beside it; None when alone or unknown."""


def parse(data: bytes) -> tuple[SagaState | None, dict[str, Any]]:
    """The state if this version can read it, and the raw JSON either way."""
    try:
        raw = json.loads(data)
    except ValueError:
        return None, {}
    kept = raw if isinstance(raw, dict) else {}
    try:
        return SagaState.from_bytes(data), kept  # what a tracker reads
    except msgspec.DecodeError:
        return None, kept


def lanes(state: SagaState, definition: Saga | None) -> list[Lane]:
    """A lane per step, in definition order when the definition is known."""
    groups: dict[str, int] = {}
    order = list(state.steps)
    if definition is not None:
        stages: dict[int, list[str]] = {}
        for placed in definition.placed:
            stages.setdefault(placed.stage, []).append(placed.step.name)
        groups = {n: s for s, names in stages.items() if len(names) > 1 for n in names}
        known = [p.step.name for p in definition.placed]
        order = [n for n in known if n in state.steps] + [n for n in order if n not in known]
        order = _with_sub_sagas(order, state)
    return [
        Lane(name, ("   " * name.count("/")) + name.rsplit("/", 1)[-1], groups.get(name))
        for name in order
    ]


def _with_sub_sagas(order: list[str], state: SagaState) -> list[str]:
    """A sub-saga's own lane goes right above its steps' (``payment`` above ``payment/...``)."""
    out: list[str] = []
    for name in order:
        parent = name.rsplit("/", 1)[0] if "/" in name else None
        if parent is not None and parent in state.steps and parent not in out:
            out.append(parent)
        if name not in out:
            out.append(name)
    return out


def _mark(entry: HistoryEntry) -> tuple[str, str]:
    """(shape, colour) of a history entry's marker."""
    action = entry.action
    if entry.trigger == "compensate" or action.startswith("emitted"):
        return "diamond", "#ef6c00"
    if action == CONFIRMED:
        return "dot", "#ef6c00"
    if "failed" in action or entry.trigger == "deadline":
        return "dot", "#c62828"
    if "succeeded" in action or action.startswith("started"):
        return "dot", "#2e7d32"
    return "dot", "#607d8b"


def timeline_svg(state: SagaState, definition: Saga | None) -> str:
    rows = [Lane("", "saga", None), *lanes(state, definition)]
    index = {lane.name: i for i, lane in enumerate(rows)}
    times = [t for e in state.history for t in (e.at, e.occurred_at) if t is not None]
    if state.started_at is not None:
        times.append(state.started_at)
    begin, end = (min(times), max(times)) if times else (0.0, 1.0)
    span = max(end - begin, 0.001)
    plot = WIDTH - LABEL - 150

    def x(at: float) -> float:
        return LABEL + plot * (at - begin) / span

    height = LANE * len(rows) + 40
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="timeline" width="{WIDTH}" '
        f'height="{height}" font-size="12" font-family="sans-serif">'
    ]
    for i, lane in enumerate(rows):
        y = 20 + i * LANE
        parts.append(
            f'<text x="6" y="{y + 4}" xml:space="preserve">{esc(lane.label)}</text>'
            f'<line x1="{LABEL}" x2="{LABEL + plot}" y1="{y}" y2="{y}" stroke="#ddd"/>'
        )
    parts += _groups(rows)
    for i, lane in enumerate(rows):
        step = state.steps.get(lane.name) if lane.name else None
        due: list[tuple[str, float | None]] = (
            [("saga deadline", state.deadline_at)]
            if step is None
            else [
                (name.removesuffix("_at").replace("_", " "), value)
                for name, value in msgspec.structs.asdict(step).items()
                if name.endswith("due_at") and isinstance(value, int | float)
            ]
        )
        parts += _deadlines(due, 20 + i * LANE, x, end, plot)
    for entry in state.history:
        y = 20 + index.get(entry.step or "", 0) * LANE
        shape, colour = _mark(entry)
        title = f"<title>{esc(when(entry.at))} {esc(entry.trigger)}: {esc(entry.action)}</title>"
        if entry.occurred_at is not None:
            parts.append(
                f'<line x1="{x(entry.occurred_at):.1f}" x2="{x(entry.at):.1f}" y1="{y}" '
                f'y2="{y}" stroke="{colour}" stroke-width="2"/>'
                f'<circle cx="{x(entry.occurred_at):.1f}" cy="{y}" r="4" fill="white" '
                f'stroke="{colour}"/>'
            )
        cx = x(entry.at)
        if shape == "diamond":
            parts.append(
                f'<path d="M{cx:.1f} {y - 6}l6 6l-6 6l-6 -6z" fill="{colour}">{title}</path>'
            )
        else:
            parts.append(f'<circle cx="{cx:.1f}" cy="{y}" r="5" fill="{colour}">{title}</circle>')
    parts.append(
        f'<text x="{LABEL}" y="{height - 6}" fill="#777">{esc(when(begin))}</text>'
        f'<text x="{LABEL + plot}" y="{height - 6}" text-anchor="end" fill="#777">'
        f"+{span:.3f}s</text></svg>"
    )
    return "".join(parts)


def _groups(rows: list[Lane]) -> list[str]:
    """A bracket beside each parallel group's lanes, labelled 'parallel'."""
    out = []
    seen: dict[int, list[int]] = {}
    for i, lane in enumerate(rows):
        if lane.group is not None:
            seen.setdefault(lane.group, []).append(i)
    for members in seen.values():
        top, bottom = 20 + members[0] * LANE - 9, 20 + members[-1] * LANE + 9
        out.append(
            f'<path d="M{LABEL - 12} {top}h-5v{bottom - top}h5" fill="none" stroke="#5c6bc0"/>'
            f'<text x="{LABEL - 20}" y="{(top + bottom) / 2 + 4}" text-anchor="end" '
            'fill="#5c6bc0" font-size="10">parallel</text>'
        )
    return out


def _deadlines(
    due: list[tuple[str, float | None]], y: float, x: Any, end: float, plot: float
) -> list[str]:
    out = []
    for label, at in due:
        if at is None:
            continue
        if at <= end:
            out.append(
                f'<line x1="{x(at):.1f}" x2="{x(at):.1f}" y1="{y - 10}" y2="{y + 10}" '
                f'stroke="#c62828" stroke-dasharray="3,2"><title>{esc(label)} '
                f"{esc(when(at))}</title></line>"
            )
        else:
            out.append(
                f'<text x="{LABEL + plot + 6}" y="{y + 4}" fill="#c62828" font-size="10">'
                f"{esc(label)} {esc(when(at)[11:])}</text>"
            )
    return out


def _others(fields: object, drawn: frozenset[str]) -> str:
    """``name=value`` of the fields not drawn elsewhere that hold something."""
    if not isinstance(fields, dict):
        return ""
    return ", ".join(
        f"{k}={json.dumps(v)}" for k, v in fields.items() if k not in drawn and v not in EMPTY
    )


def undo_order(state: SagaState) -> list[str]:
    """The steps whose compensation was confirmed, in the order it was."""
    return [e.step for e in state.history if e.action == CONFIRMED and e.step]


def details(state: SagaState, raw: dict[str, Any], definition: Saga | None) -> str:
    undone = undo_order(state)
    found = raw.get("steps")
    raw_steps: dict[str, Any] = found if isinstance(found, dict) else {}
    steps = table(
        ["step", "status", "compensation attempts", "deadline", "compensation due", "other"],
        (
            [
                esc(name),
                f'<span class="s-{esc(step.status.value)}">{esc(step.status.value)}</span>',
                f'<span class="num">{step.attempts}</span>',
                esc(when(step.due_at)),
                esc(when(step.compensation_due_at)),
                esc(_others(raw_steps.get(name), STEP_DRAWN)),
            ]
            for name, step in state.steps.items()
        ),
        "steps",
    )
    history = table(
        ["handled (tracker)", "event time (ce_time)", "trigger", "step", "action"],
        (
            [
                esc(when(e.at)),
                esc(when(e.occurred_at)),
                esc(e.trigger),
                esc(e.step or ""),
                esc(e.action),
            ]
            for e in state.history
        ),
        "history",
    )
    unknown = {k: v for k, v in raw.items() if k not in SAGA_DRAWN and v not in EMPTY}
    extra = (
        "<h2>Other fields</h2>"
        + table(["field", "value"], ([esc(k), esc(json.dumps(v))] for k, v in unknown.items()))
        if unknown
        else ""
    )
    events = {
        "start": raw.get("start"),
        **{name: step.get("result") for name, step in (raw.get("steps") or {}).items()},
        "buffered": raw.get("buffer"),
    }
    failure = (
        f'<p class="warn">compensating because {esc(state.reason)}</p>' if state.reason else ""
    )
    return (
        f'<p>{esc(state.saga)} v{state.version}, <b class="s-{esc(state.status.value)}" '
        f'id="status">{esc(state.status.value)}</b>; started {esc(when(state.started_at))}, '
        f"deadline {esc(when(state.deadline_at))}, next timer {esc(when(state.wake_at))}</p>"
        f"{failure}{timeline_svg(state, definition)}"
        + (
            '<h2>Undone, in this order</h2><ol id="undone">'
            + "".join(f"<li>{esc(s)}</li>" for s in undone)
            + "</ol>"
            if undone
            else ""
        )
        + f"<h2>Steps</h2>{steps}<h2>History</h2>{history}{extra}"
        "<details><summary>Raw events</summary>"
        f"<pre>{esc(json.dumps(events, indent=2, default=str))}</pre></details>"
    )
