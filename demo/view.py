"""What the demo prints: a live progress bar with sagas by state, then the summary."""

from __future__ import annotations

import sys
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from choreo._saga.state import TERMINAL, SagaState, SagaStatus, StepStatus
from demo.scenarios import Manager, PlannedOrder
from services.events import CancellationSent

STATES = ("not seen", *[s.value for s in SagaStatus])
BAR_WIDTH = 40
GAVE_UP = frozenset({StepStatus.FAILED, StepStatus.TIMED_OUT})
PRINT_EVERY_S = 2.0
"""Without a terminal (CI logs), at most one progress line this often, and only on change."""


@dataclass(frozen=True)
class Verdict:
    order: PlannedOrder
    state: SagaState | None

    @property
    def status(self) -> str:
        return self.state.status.value if self.state else "not seen"

    @property
    def failed_step(self) -> str | None:
        """The step whose failure or missed deadline started the compensation."""
        steps = self.state.steps.items() if self.state else ()
        return next((name for name, step in steps if step.status in GAVE_UP), None)

    @property
    def cause(self) -> str:
        """What started the compensation: a step, the customer's cancel, or the deadline."""
        cancel = None if self.state is None else self.state.cancel
        if cancel is not None and cancel.applied:
            return "customer cancel"
        return self.failed_step or "saga deadline"

    @property
    def as_expected(self) -> bool:
        scenario = self.order.scenario
        if scenario.cancel:
            return self._cancel_as_expected()
        return self.status == scenario.expected and self.failed_step == scenario.failed_step

    def _cancel_as_expected(self) -> bool:
        """Compensated because the customer asked, or completed first and the cancel kept as
        not applied."""
        cancel = None if self.state is None else self.state.cancel
        if cancel is None:
            return False
        if self.status == "compensated":
            return cancel.applied and str(self.state and self.state.reason).startswith("cancelled")
        return self.status == "completed" and not cancel.applied

    @property
    def customer_told(self) -> bool:
        """Whether the customer must get a notice that the order will not go through."""
        if self.order.scenario.cancel:
            return self.status == "compensated"
        return self.order.scenario.customer_told

    @property
    def done(self) -> bool:
        """Finished, and a planned cancel was read by the tracker (it may come after the end)."""
        state = self.state
        if state is None or state.status not in TERMINAL:
            return False
        return not self.order.scenario.cancel or state.cancel is not None


def verdicts(orders: Sequence[PlannedOrder], states: Mapping[str, SagaState]) -> list[Verdict]:
    return [Verdict(o, states.get(o.order_id)) for o in orders]


def finished(verdicts: Sequence[Verdict]) -> bool:
    return all(v.done for v in verdicts)


class Progress:
    """Redraws in place on a terminal; prints a line every few seconds otherwise (CI logs)."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.tty = sys.stdout.isatty()
        self._drawn = 0
        self._last_line = ""
        self._next_print = 0.0

    def show(self, verdicts: Sequence[Verdict], sent: int, waiting: int, elapsed: float) -> None:
        counts = Counter(v.status for v in verdicts)
        done = sum(counts[s.value] for s in TERMINAL)
        filled = BAR_WIDTH * done // self.total
        bar = f"[{'#' * filled}{'.' * (BAR_WIDTH - filled)}] {done}/{self.total} sagas finished"
        table = [
            f"  {state:<13}{counts[state]:>6}"
            for state in STATES
            if counts[state] or state != "waiting"
        ]
        lines = [
            f"{bar}  {elapsed:5.1f}s  sent {sent}/{self.total}  awaiting a manager {waiting}",
            *table,
        ]
        if self.tty:
            if self._drawn:
                sys.stdout.write(f"\x1b[{self._drawn}F\x1b[J")
            sys.stdout.write("\n".join(lines) + "\n")
            sys.stdout.flush()
            self._drawn = len(lines)
        else:
            line = ", ".join(f"{s} {counts[s]}" for s in STATES if counts[s])
            if line != self._last_line and time.monotonic() >= self._next_print:
                print(f"{bar}  {elapsed:5.1f}s  {line}", flush=True)
                self._last_line = line
                self._next_print = time.monotonic() + PRINT_EVERY_S


def summary(
    verdicts: Sequence[Verdict],
    elapsed: float,
    send_s: float,
    dlq_added: Mapping[str, int],
    traces: Mapping[str, tuple[str, int, list[str]]],
) -> str:
    """The closing report: outcomes by scenario and reason, DLQ, throughput, trace links."""
    counts = Counter(v.status for v in verdicts)
    reasons = Counter(v.cause for v in verdicts if v.status == "compensated")
    lines = [
        "",
        f"{len(verdicts)} orders: accepted by the ingress in {send_s:.1f}s, every saga finished "
        f"in {elapsed:.1f}s ({len(verdicts) / elapsed:.1f} sagas/s end to end, waits included)",
        f"  completed    {counts['completed']:>5}",
        f"  compensated  {counts['compensated']:>5}   by the step that failed (or cause): "
        + ", ".join(f"{step} {n}" for step, n in sorted(reasons.items(), key=lambda i: -i[1])),
        f"  failed       {counts['failed']:>5}   (parked for a person)",
    ]
    unfinished = len(verdicts) - sum(counts[s.value] for s in TERMINAL)
    if unfinished:
        lines.append(f"  unfinished   {unfinished:>5}")
    lines += ["", f"{'scenario':<32}{'orders':>7}  {'expected':<40}{'as expected':>12}"]
    by_scenario: dict[str, list[Verdict]] = {}
    for v in verdicts:
        by_scenario.setdefault(v.order.scenario.name, []).append(v)
    for name, group in by_scenario.items():
        scenario = group[0].order.scenario
        expected = scenario.expected + (
            f" ({scenario.failed_step})" if scenario.failed_step else ""
        )
        if scenario.cancel:
            expected = "compensated, or completed if too late"
        ok = sum(v.as_expected for v in group)
        lines.append(f"{name:<32}{len(group):>7}  {expected:<40}{ok:>5}/{len(group):<6}")
    lines += _controls(verdicts)
    lines += ["", "dead-letter topics (records added during the demo):"]
    lines += [f"  {topic}  +{n}" for topic, n in sorted(dlq_added.items())] or ["  none"]
    lines += ["", "traces (Jaeger's UI, or where it has none, `.venv/bin/choreo console`):"]
    for label, (url, spans, services) in traces.items():
        lines.append(
            f"  {label:<12} {url}  ({spans} spans from {len(services)} services: "
            f"{', '.join(services)})"
        )
    return "\n".join(lines)


def unexpected(verdicts: Sequence[Verdict], limit: int = 10) -> list[str]:
    """The sagas that did not end as their scenario expects, with where each one stands.

    Printed last, after the processes' log tails, so that a CI log cut to its end still says
    which step each stuck saga waits for."""
    wrong = [v for v in verdicts if not v.as_expected or not v.done]
    lines = [f"{len(wrong)} of {len(verdicts)} sagas not as expected" + (":" if wrong else "")]
    for v in wrong[:limit]:
        state = v.state
        if state is None:
            lines.append(
                f"  {v.order.order_id} ({v.order.scenario.name}): the tracker never saw it"
            )
            continue
        steps = ", ".join(f"{name} {step.status.value}" for name, step in state.steps.items())
        last = (
            f"{state.history[-1].trigger} -> {state.history[-1].action}" if state.history else None
        )
        cancel = "none" if state.cancel is None else f"applied={state.cancel.applied}"
        lines.append(
            f"  {v.order.order_id} ({v.order.scenario.name}): {v.status}, reason {state.reason}; "
            f"steps: {steps}; cancel read: {cancel}; last: {last}"
        )
    return lines


def _controls(verdicts: Sequence[Verdict]) -> list[str]:
    """What the saga controls did: customers' cancels (applied or too late), the fallback."""
    cancels = [v.state.cancel for v in verdicts if v.state and v.state.cancel]
    applied = sum(c.applied for c in cancels)
    shipping = [v.state.steps.get("create-shipment") for v in verdicts if v.state]
    tried = [s for s in shipping if s is not None and s.fallback]
    backup = sum(s.status is not StepStatus.FAILED for s in tried)
    return [
        "",
        f"customer cancels: {len(cancels)} read by the tracker, {applied} applied (order "
        f"compensated), {len(cancels) - applied} after completion (reported, not applied)",
        f"carrier fallback: {len(tried)} orders the usual carrier refused, {backup} booked with "
        f"the backup carrier, {len(tried) - backup} refused by both (compensated)",
    ]


def notices(
    verdicts: Sequence[Verdict], sent: Mapping[str, Mapping[str, CancellationSent]], quote: str
) -> tuple[list[str], bool]:
    """What the customers of orders that did not go through were told; ok if exactly they were,
    once each (one event id: a redelivered copy keeps its id), and every rejection quoted the
    manager's comment."""
    expected = {v.order.order_id for v in verdicts if v.customer_told}
    rejected = {v.order.order_id for v in verdicts if v.order.scenario.manager is Manager.REJECT}
    first = {order_id: next(iter(by_id.values())) for order_id, by_id in sent.items()}
    missing, extra = expected - first.keys(), first.keys() - expected
    twice = [i for i, by_id in sent.items() if len(by_id) > 1]
    unquoted = [i for i in rejected & first.keys() if quote not in first[i].message]
    reasons = Counter(n.reason for n in first.values())
    lines = [
        "",
        f"customers told why their order did not go through: {len(first)} of {len(expected)} "
        "expected, by reason: "
        + ", ".join(f"{reason} {n}" for reason, n in sorted(reasons.items(), key=lambda i: -i[1])),
    ]
    example = next((first[i].message for i in sorted(rejected & first.keys())), None)
    if example:
        lines.append(f'  a rejected order\'s customer read: "{example}"')
    problems = (
        [f"  NOT TOLD {i}" for i in sorted(missing)]
        + [f"  TOLD BUT NOT CANCELLED {i}: {first[i].message}" for i in sorted(extra)]
        + [f"  TOLD {len(sent[i])} TIMES {i}" for i in sorted(twice)]
        + [f"  REJECTION NOT QUOTED {i}: {first[i].message}" for i in sorted(unquoted)]
    )
    return lines + problems[:10], not problems
