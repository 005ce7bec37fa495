"""A small deterministic SVG of the choreography and the sagas, without a browser.

Layout, top part: three columns, writers → topics → readers (an application that both
writes and reads appears on both sides), each column ordered to keep edges short (each
node sits at the mean position of its neighbours in the topic column). Bottom part: each
saga left to right, one column per stage, parallel steps stacked. Text is monospace so
box widths can be computed from character counts; coordinates are integers, so the same
system always gives the same bytes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise
from xml.sax.saxutils import escape

from choreo._docs.flows import Flow, reads, short, stages, step_lines, topics, writes
from choreo._docs.model import System
from choreo._saga.definition import Saga

CHAR_W = 7.3
"""Advance of one character of a 12px monospace font (DejaVu Sans Mono: 7.22)."""
LINE_H = 15
PAD = 8
GAP = 14
MARGIN = 24
COLUMN_GAP = 140
FONT = "font-family='DejaVu Sans Mono, Menlo, Consolas, monospace' font-size='12'"

_FILL = {
    "service": ("#e8f1fb", "#2b6cb0"),
    "saga tracker": ("#fdf1e3", "#c05621"),
    "ingress": ("#eaf7ec", "#2f855a"),
    "topic": ("#f4f4f4", "#555555"),
    "step": ("#ffffff", "#444444"),
    "end": ("#f4f4f4", "#555555"),
}


@dataclass
class Box:
    key: str
    lines: list[str]
    kind: str
    x: int = 0
    y: int = 0

    @property
    def width(self) -> int:
        return math.ceil(max(len(line) for line in self.lines) * CHAR_W) + 2 * PAD

    @property
    def height(self) -> int:
        return len(self.lines) * LINE_H + 2 * PAD - 4

    @property
    def middle(self) -> int:
        return self.y + self.height // 2


def render(system: System, sagas: Sequence[Saga]) -> str:
    parts: list[str] = []
    width, height = _choreography(system, parts, MARGIN)
    for saga in sagas:
        saga_width, bottom = _saga(saga, parts, height + 2 * GAP)
        width, height = max(width, saga_width), bottom
    header = (
        f"<svg xmlns='http://www.w3.org/2000/svg' width='{width + MARGIN}' "
        f"height='{height + MARGIN}' viewBox='0 0 {width + MARGIN} {height + MARGIN}'>"
    )
    defs = (
        "<defs><marker id='arrow' viewBox='0 0 10 10' refX='10' refY='5' markerWidth='7' "
        "markerHeight='7' orient='auto-start-reverse'><path d='M0,0 L10,5 L0,10 z' "
        "fill='#555555'/></marker></defs>"
    )
    background = "<rect width='100%' height='100%' fill='#ffffff'/>"
    return "\n".join([header, defs, background, *parts, "</svg>"]) + "\n"


def _choreography(system: System, out: list[str], top: int) -> tuple[int, int]:
    """Writers, topics, readers; returns the right and bottom edges drawn."""
    kinds = {app.name: app.kind for app in system.applications}
    written, read = writes(system), reads(system)
    topic_boxes = [
        Box(t, [t, *(f"  {short(e)}" for e in _carried(system, t))], "topic")
        for t in topics(system)
    ]
    order = {box.key: i for i, box in enumerate(topic_boxes)}
    writers = _ordered([f.application for f in written], written, order, kinds)
    readers = _ordered([f.application for f in read], read, order, kinds)
    title_y = top + 14
    out.append(_text(MARGIN, title_y, "Choreography: who emits (left) and handles (right)", True))
    top = title_y + GAP
    columns = [writers, topic_boxes, readers]
    widths = [max((b.width for b in column), default=0) for column in columns]
    lefts = [MARGIN, MARGIN + widths[0] + COLUMN_GAP]
    lefts.append(lefts[1] + widths[1] + COLUMN_GAP)
    y = top
    for box in topic_boxes:
        box.x, box.y = lefts[1] + (widths[1] - box.width) // 2, y
        y += box.height + GAP
    by_topic = {b.key: b for b in topic_boxes}
    _beside(writers, written, by_topic, lefts[0] + widths[0], top, align_right=True)
    _beside(readers, read, by_topic, lefts[2], top, align_right=False)
    left = {b.key: b for b in writers}
    right = {b.key: b for b in readers}
    for flow in written:
        out.append(_edge(left[flow.application], by_topic[flow.topic], dashed=False))
    for flow in read:
        out.append(_edge(by_topic[flow.topic], right[flow.application], dashed=True))
    for box in (*writers, *topic_boxes, *readers):
        out.append(_box(box))
    bottom = max(b.y + b.height for b in (*writers, *topic_boxes, *readers))
    return lefts[2] + widths[2], bottom


def _beside(
    boxes: list[Box],
    flows: list[Flow],
    by_topic: dict[str, Box],
    edge: int,
    top: int,
    *,
    align_right: bool,
) -> None:
    """Each box level with the mean of the topics it is linked to, pushed down to not overlap."""
    linked: dict[str, list[int]] = {}
    for flow in flows:
        linked.setdefault(flow.application, []).append(by_topic[flow.topic].middle)
    y = top
    for box in boxes:  # already in order of their mean topic position
        wanted = sum(linked[box.key]) // len(linked[box.key]) - box.height // 2
        box.y = max(wanted, y)
        box.x = edge - box.width if align_right else edge
        y = box.y + box.height + GAP


def _carried(system: System, topic: str) -> list[str]:
    spec = system.catalog.topics.get(topic)
    return list(spec.events) if spec is not None else ["(records)"]


def _ordered(
    names: list[str], flows: list[Flow], order: dict[str, int], kinds: dict[str, str]
) -> list[Box]:
    """One box per application, placed at the mean position of the topics it touches."""
    positions: dict[str, list[int]] = {}
    for flow in flows:
        positions.setdefault(flow.application, []).append(order[flow.topic])
    ranked = sorted(set(names), key=lambda n: (sum(positions[n]) / len(positions[n]), n))
    return [Box(name, [name], kinds[name]) for name in ranked]


def _saga(saga: Saga, out: list[str], top: int) -> tuple[int, int]:
    title_y = top + 14
    out.append(_text(MARGIN, title_y, f"Saga {saga.name} v{saga.version}", True))
    top = title_y + GAP
    start = Box("start", [f"start: {short(saga.start.event_type)}"], "end")
    end_events = ", ".join(short(e.event_type) for e in saga.completed) or "all steps done"
    done = Box("done", [f"completed: {end_events}"], "end")
    columns: list[list[Box]] = [[start]]
    columns += [[Box(p.step.name, step_lines(p), "step") for p in group] for group in stages(saga)]
    columns.append([done])
    tallest = max(sum(b.height + GAP for b in c) - GAP for c in columns)
    x = MARGIN
    for column in columns:
        column_width = max(b.width for b in column)
        y = top + (tallest - (sum(b.height + GAP for b in column) - GAP)) // 2
        for box in column:
            box.x, box.y = x, y
            y += box.height + GAP
        x += column_width + COLUMN_GAP // 3
    for before, after in pairwise(columns):
        for a in before:
            for b in after:
                out.append(_edge(a, b, dashed=False))
    out += [_box(box) for column in columns for box in column]
    return x - COLUMN_GAP // 3, top + tallest


def _box(box: Box) -> str:
    fill, stroke = _FILL[box.kind]
    radius = 14 if box.kind in ("topic", "end") else 4
    parts = [
        f"<g><rect x='{box.x}' y='{box.y}' width='{box.width}' height='{box.height}' "
        f"rx='{radius}' fill='{fill}' stroke='{stroke}'/>"
    ]
    for i, line in enumerate(box.lines):
        parts.append(_text(box.x + PAD, box.y + PAD + 8 + i * LINE_H, line, bold=i == 0))
    parts.append("</g>")
    return "".join(parts)


def _edge(a: Box, b: Box, *, dashed: bool) -> str:
    x1, y1, x2, y2 = a.x + a.width, a.middle, b.x, b.middle
    bend = (x2 - x1) // 2
    dash = " stroke-dasharray='5,4'" if dashed else ""
    return (
        f"<path d='M{x1},{y1} C{x1 + bend},{y1} {x2 - bend},{y2} {x2},{y2}' fill='none' "
        f"stroke='#555555'{dash} marker-end='url(#arrow)'/>"
    )


def _text(x: int, y: int, text: str, bold: bool = False) -> str:
    weight = " font-weight='bold'" if bold else ""
    return f"<text x='{x}' y='{y}' {FONT}{weight}>{escape(text)}</text>"
