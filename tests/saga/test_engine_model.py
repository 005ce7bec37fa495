"""Model-based property test of the saga engine: any definition, any arrival order, any crash.

Hypothesis draws a definition (sequences, parallel groups, sub-sagas, conditional steps, step
and saga deadlines, heartbeats, fallback chains, an abort event), what each step's service
does (succeeds, fails, never answers, answers after its deadline; the same for each fallback;
progress events at random gaps first) and then a schedule: which input topic the tracker
reads next (Kafka keeps order per topic only), duplicates, transaction commits, tracker
crashes (state back to the last commit, the uncommitted input read again, its emits lost),
slow services, time, and a customer's cancel at any point. The simulated services act in
choreography (a stage starts once the stage before succeeded) and apply compensations and
fallback commands idempotently by ``ce_id``. Like the real tracker (see
``choreo._saga.caught_up``), the engine's clock only moves once it has read every event
already written.

Checked against that world: the end state; each succeeded step with a compensation undone
exactly once (one ``ce_id`` per step) iff the saga did not complete, and nothing else undone
(a cancel included); compensations in reverse definition order (a success that came after
its step timed out, or after the wait for it, is exempt: it is undone as soon as it is read);
never ``compensated`` while an activated step may still report; a heartbeat fires only after
the step's service really was silent that long; each fallback command goes out with one
``ce_id``, only after the failure it answers; a cancel read after completion is kept as not
applied, and an applied one never ends ``completed``. ``derandomize``: CI runs the same
examples every time; a failure prints its case, to be kept below as a plain regression test.
"""

from __future__ import annotations

import re
from collections import deque
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from choreo import Event
from choreo.saga import (
    Engine,
    Fallback,
    Incoming,
    Parallel,
    Saga,
    SagaState,
    SagaStatus,
    Step,
    SubSaga,
)
from choreo.saga import StepStatus as S

SLOTS = 6
DEADLINE = timedelta(seconds=5)
UNDO_DEADLINE = timedelta(seconds=3)
LATE = 30.0
DELAYS = (0.5, 2.0, LATE)
"""Service answer delays: in time, and after any deadline. A late success is undone as soon
as it is read, after the steps before it only if they were still to be undone (documented):
whether a compensation already went out when it is read depends on how topics interleave."""
EXAMPLES = 2000


def _model(name: str, **fields: type) -> type[Event]:
    namespace: dict[str, Any] = {
        "__annotations__": fields,
        "__module__": __name__,
        "event_type": f"model.{name}",
    }
    return type(name, (Event,), namespace)


Begin = _model("Begin", saga=str, flags=int)
OK = [_model(f"Ok{i}", saga=str) for i in range(SLOTS)]
BAD = [_model(f"Bad{i}", saga=str) for i in range(SLOTS)]
UNDO = [_model(f"Undo{i}", saga=str) for i in range(SLOTS)]
UNDONE = [_model(f"Undone{i}", saga=str) for i in range(SLOTS)]
PROGRESS = [_model(f"Progress{i}", saga=str) for i in range(SLOTS)]
LEVELS = 2
"""The longest fallback chain drawn."""
RETRY = [[_model(f"Retry{i}x{k}", saga=str) for i in range(SLOTS)] for k in range(LEVELS)]
RETRY_BAD = [[_model(f"RetryBad{i}x{k}", saga=str) for i in range(SLOTS)] for k in range(LEVELS)]
CANCEL = _model("Cancel", saga=str, requested_by=str, reason=str)
HEARTBEAT = timedelta(seconds=4)
GAPS = (1.0, 3.0, 6.0)
"""Between a step's progress events: the last is a silence longer than the heartbeat."""


def _bad(slot: int, level: int) -> type[Event]:
    """The failure event of attempt ``level`` (0: the step's own) of step ``slot``."""
    return BAD[slot] if level == 0 else RETRY_BAD[level - 1][slot]


def _fallbacks(slot: int, count: int) -> list[Fallback]:
    return [
        Fallback(
            on=[_bad(slot, level)],
            command=RETRY[level][slot],
            success=[OK[slot]],
            failure=[_bad(slot, level + 1)],
        )
        for level in range(count)
    ]


def _step(
    slot: int,
    compensable: bool,
    deadline: bool,
    conditional: bool,
    heartbeat: bool = False,
    fallbacks: int = 0,
) -> Step:
    return Step(
        f"s{slot}",
        success=[OK[slot]],
        failure=[BAD[slot]],
        compensate=UNDO[slot] if compensable else None,
        compensated=[UNDONE[slot]] if compensable else (),
        needs_compensation=compensable,
        deadline=DEADLINE if deadline else None,
        when=(lambda start, bit=1 << slot: not start.flags & bit) if conditional else None,
        compensation_deadline=UNDO_DEADLINE,
        compensation_retries=1000,  # the services always answer in the end: never parked
        progress=[PROGRESS[slot]] if heartbeat else (),
        heartbeat=HEARTBEAT if heartbeat else None,
        fallbacks=_fallbacks(slot, fallbacks),
    )


@st.composite
def definitions(draw: st.DrawFn) -> Saga:
    count = draw(st.integers(1, SLOTS))
    steps = [
        _step(
            slot,
            draw(st.booleans()),
            draw(st.booleans()),
            draw(st.integers(0, 4)) == 0,
            draw(st.integers(0, 2)) == 0,
            draw(st.sampled_from([0, 0, 1, LEVELS])),
        )
        for slot in range(count)
    ]
    items: list[Step | Parallel | SubSaga] = []
    while steps:
        kind = draw(st.sampled_from(["step", "step", "parallel", "sub"]))
        size = 1 if kind == "step" else min(len(steps), draw(st.integers(1, 3)))
        chunk, steps = steps[:size], steps[size:]
        if kind == "step":
            items.append(chunk[0])
        elif kind == "parallel":
            items.append(Parallel(chunk))
        else:
            inner = Saga(f"sub{len(items)}", 1, Begin, chunk)
            items.append(SubSaga(inner))
    deadline = draw(st.sampled_from([None, timedelta(seconds=20)]))
    return Saga("model", 1, Begin, items, deadline=deadline, abort=[CANCEL])


def _slot(name: str) -> int:
    """``s3`` or ``sub1/s3`` → 3."""
    return int(name.rsplit("s", 1)[1])


@dataclass
class Record:
    born: int
    """Sequence number when it was written: compares with emits for 'truly late'."""
    event: Event
    event_id: str


@dataclass
class World:
    """The services, the topics and the tracker, all in memory, driven by hypothesis."""

    saga: Saga
    outcome: dict[str, list[str]]
    """Per step, what each attempt does: the step's own, then each fallback's."""
    delay: dict[str, float]
    flags: int
    gaps: dict[str, list[float]] = field(default_factory=dict)
    """Per heartbeat step: the gaps between its progress events before it answers."""
    engine: Engine = field(init=False)
    now: float = 0.0
    seq: int = 0
    topics: dict[str, deque[Record]] = field(default_factory=dict)
    commands: dict[str, deque[Record]] = field(default_factory=dict)
    scheduled: list[tuple[float, int, str, Event]] = field(default_factory=list)
    state: SagaState | None = None
    committed: bytes | None = None
    uncommitted: list[tuple[str, Record]] = field(default_factory=list)
    pending_emits: list[tuple[str, Record]] = field(default_factory=list)
    """(step, compensation) decided in the open transaction."""
    delivered: set[str] = field(default_factory=set)
    """Step names whose report (success or failure) the engine has read."""
    delivered_ok: set[str] = field(default_factory=set)
    committed_delivered: tuple[set[str], set[str]] = (set(), set())
    emitted: dict[str, list[tuple[int, str]]] = field(default_factory=dict)
    """Per step: (sequence, ce_id) of each compensation the tracker published."""
    applied: dict[str, int] = field(default_factory=dict)
    seen_ids: dict[str, set[str]] = field(default_factory=dict)
    born_ok: dict[str, int] = field(default_factory=dict)
    activated: set[int] = field(default_factory=set)
    violations: list[str] = field(default_factory=list)
    beats: dict[str, list[float]] = field(default_factory=dict)
    """Per step: when it was started and when its service wrote anything (not undo replies)."""
    fallbacks_sent: dict[tuple[str, int], set[str]] = field(default_factory=dict)
    failed_at: dict[str, int] = field(default_factory=dict)
    """Per step: the highest attempt level whose failure was written."""
    timed_out: set[str] = field(default_factory=set)
    cancelled: bool = False
    cancel_read_as: SagaStatus | None = None
    """The saga's status when the engine read the cancel (waiting: before the start)."""
    written: dict[str, Event] = field(default_factory=dict)
    """Every event the services wrote, by id."""

    def __post_init__(self) -> None:
        self.engine = Engine([self.saga])
        self.topics = {"start": deque(), "cancel": deque()}
        self.topics |= {p.step.name: deque() for p in self.saga.placed}
        self.commands = {p.step.name: deque() for p in self.saga.placed}
        self._write("start", Begin(saga="m", flags=self.flags))
        self._activate()

    # -- the services ----------------------------------------------------------------------

    def _skipped(self, name: str) -> bool:
        step = self.saga.step(name).step
        return step.when is not None and not step.when(Begin(saga="m", flags=self.flags))

    def _write(self, topic: str, event: Event) -> None:
        self.seq += 1
        self.topics[topic].append(Record(self.seq, event, f"w{self.seq}"))
        self.written[f"w{self.seq}"] = event
        if isinstance(event, tuple(OK)):
            self.born_ok[topic] = self.seq
        if topic in self.beats and not isinstance(event, tuple(UNDONE)):
            self.beats[topic].append(self.now)
        level = self._level(event)
        if level is not None:
            self.failed_at[topic] = max(level, self.failed_at.get(topic, -1))

    @staticmethod
    def _level(event: Event) -> int | None:
        """The attempt a failure event answers, None for any other event."""
        if isinstance(event, tuple(BAD)):
            return 0
        return next((k + 1 for k in range(LEVELS) if isinstance(event, tuple(RETRY_BAD[k]))), None)

    def _answer(self, name: str, level: int, after: float) -> None:
        """Schedule attempt ``level`` of step ``name``'s answer, ``after`` seconds from now."""
        what = self.outcome[name][level]
        if what != "silent":
            made = OK[_slot(name)] if what == "ok" else _bad(_slot(name), level)
            self.scheduled.append((self.now + after, self.seq, name, made(saga="m")))

    def cancel(self) -> None:
        """The customer cancels (once)."""
        if not self.cancelled:
            self.cancelled = True
            self._write("cancel", CANCEL(saga="m", requested_by="customer", reason="changed mind"))

    def _activate(self) -> None:
        """Choreography: the first stage not done starts once every stage before succeeded."""
        for number, members in enumerate(self.saga.stages):
            names = [p.step.name for p in members if not self._skipped(p.step.name)]
            if all(n in self.born_ok for n in names):
                continue
            if number in self.activated:
                return
            self.activated.add(number)
            for n in names:
                self.beats[n] = [self.now]
                at = 0.0
                for gap in self.gaps.get(n, []):
                    at += gap
                    event = PROGRESS[_slot(n)](saga="m")
                    self.scheduled.append((self.now + at, self.seq, n, event))
                self._answer(n, 0, at + self.delay[n])
            return

    def failed(self) -> bool:
        """A step's service reported a failure no fallback answers (it was written)."""
        return any(
            self.failed_at.get(n, -1) == len(self.saga.step(n).step.fallbacks) for n in self.outcome
        )

    def serve(self, name: str) -> None:
        """The service of step ``name`` handles one command (an undo or a fallback), once."""
        record = self.commands[name].popleft()
        seen = self.seen_ids.setdefault(name, set())
        if record.event_id in seen:
            return
        seen.add(record.event_id)
        level = next(
            (k + 1 for k in range(LEVELS) if isinstance(record.event, RETRY[k][_slot(name)])), None
        )
        if level is not None:
            self._answer(name, level, self.delay[name])
            return
        self.applied[name] = self.applied.get(name, 0) + 1
        self._write(name, UNDONE[_slot(name)](saga="m"))

    # -- the tracker -----------------------------------------------------------------------

    def deliver(self, topic: str) -> None:
        record = self.topics[topic].popleft()
        self.uncommitted.append((topic, record))
        level = self._level(record.event)
        running = self.state is not None and self.state.status is SagaStatus.RUNNING
        last = level is not None and level == len(self.saga.step(topic).step.fallbacks)
        if isinstance(record.event, tuple(OK)) or last or (level is not None and not running):
            self.delivered.add(topic)  # a report after which the step cannot answer again
        if isinstance(record.event, tuple(OK)):
            self.delivered_ok.add(topic)
        if isinstance(record.event, CANCEL) and (
            self.state is None or record.event_id not in self.state.seen_ids
        ):
            self.cancel_read_as = SagaStatus.WAITING if self.state is None else self.state.status
        incoming = Incoming("m", record.event, record.event_id)
        self._take(self.engine.handle(self.state, incoming, self.now))

    def advance(self, seconds: float) -> None:
        self.now += seconds
        for entry in sorted(self.scheduled, key=lambda s: (s[0], s[1])):
            if entry[0] <= self.now:
                self.scheduled.remove(entry)
                self._write(entry[2], entry[3])
                self._activate()
        caught_up = not any(self.topics.values())
        if caught_up and self.state is not None:
            self._take(self.engine.tick(self.state, self.now))

    def commit(self) -> None:
        for name, record in self.pending_emits:
            self.commands[name].append(record)
            level = next(
                (k for k in range(LEVELS) if isinstance(record.event, tuple(RETRY[k]))), None
            )
            if level is None:
                self.emitted.setdefault(name, []).append((record.born, record.event_id))
                continue
            if self.failed_at.get(name, -1) < level:
                self.violations.append(f"{name} fallback {level + 1} before its failure")
            self.fallbacks_sent.setdefault((name, level), set()).add(record.event_id)
        self.pending_emits = []
        self.uncommitted = []
        self.committed = None if self.state is None else self.state.to_bytes()
        self.committed_delivered = (set(self.delivered), set(self.delivered_ok))

    def crash(self) -> None:
        """Killed mid-batch: nothing since the last commit happened; the input is read again."""
        for topic, record in reversed(self.uncommitted):
            self.topics[topic].appendleft(record)
        self.uncommitted = []
        self.pending_emits = []
        self.state = None if self.committed is None else SagaState.from_bytes(self.committed)
        self.delivered, self.delivered_ok = (set(s) for s in self.committed_delivered)

    def duplicate(self, topic: str) -> None:
        """A producer retry or a service replaying its input: the same record once more."""
        if self.topics[topic]:
            self.topics[topic].append(self.topics[topic][0])

    def _take(self, outcome: Any) -> None:
        was = None if self.state is None else self.state.status
        if self.state is not None and outcome.state is not None:
            self._check_heartbeats(self.state, outcome.state)
        self.state = outcome.state
        if self.state is not None:
            self._check_kept_fields(self.state)
        for emit in outcome.emits:
            self.seq += 1
            self.pending_emits.append((emit.step, Record(self.seq, emit.event, emit.event_id)))
        if self.state is not None and self.state.status is not was:
            self._check_not_final_too_soon(self.state)

    def _check_kept_fields(self, state: SagaState) -> None:
        """Every event the state keeps (its start, each step's result, the buffered ones)
        keeps its fields: compensations are built from them, after a restart too."""
        kept = [state.start, *state.buffer, *(step.result for step in state.steps.values())]
        for seen in kept:
            if seen is not None and seen.fields() != self.written[seen.id].model_dump(mode="json"):
                self.violations.append(f"{seen.type} {seen.id} kept as {seen.fields()}")

    def _check_heartbeats(self, before: SagaState, after: SagaState) -> None:
        """A step timed out by its heartbeat only after its service was silent that long:
        everything written was read before the clock moved (the deadline gate), and the
        engine re-arms when it reads, never before the write."""
        for name, step in after.steps.items():
            if step.status is S.TIMED_OUT:
                self.timed_out.add(name)
            old = before.steps.get(name)
            beat = None if old is None else old.beat_due_at
            if old is None or old.status is not S.PENDING or step.status is not S.TIMED_OUT:
                continue
            if (
                beat is None
                or beat > self.now
                or (old.due_at is not None and old.due_at <= self.now)
            ):
                continue  # not the heartbeat that fired
            last = max(b for b in self.beats[name] if b <= self.now)
            if self.now - last < HEARTBEAT.total_seconds() - 1e-6:
                self.violations.append(f"{name}: heartbeat fired {self.now - last}s after a beat")

    def _check_not_final_too_soon(self, state: SagaState) -> None:
        """On becoming final: every step started by what the engine read has reported or
        was given up at its deadline. (A late success may start more steps afterwards: their
        successes re-open the saga.)"""
        if state.status not in (SagaStatus.COMPLETED, SagaStatus.COMPENSATED):
            return
        for members in self.saga.stages:  # the stages the engine can know were started
            names = [p.step.name for p in members if not self._skipped(p.step.name)]
            for name in names:
                if name not in self.delivered and state.steps[name].status is not S.TIMED_OUT:
                    self.violations.append(f"{state.status} while {name} may still report")
            if not all(n in self.delivered_ok for n in names):
                return

    def settle(self) -> None:
        """Everything delivered and answered, time moved on until nothing changes."""
        for _ in range(400):
            self.commit()
            busy = False
            for name, queue in self.commands.items():
                while queue:
                    self.serve(name)
                    busy = True
            for topic, queue in self.topics.items():
                while queue:
                    self.deliver(topic)
                    busy = True
            self.commit()
            if not busy and not self.scheduled and (self.state is None or self._quiet()):
                return
            moments = [at for at, *_ in self.scheduled]
            if self.state is not None and not self._quiet() and self.state.wake_at is not None:
                moments.append(self.state.wake_at)  # not a finished saga's retention
            self.advance(max(0.1, min(moments, default=self.now + 2.0) - self.now))
        self.violations.append("never settled")

    def _quiet(self) -> bool:
        """Finished, or running with no deadline left to wait for (a step that never answers
        and has none: the saga waits for it for ever, as documented)."""
        assert self.state is not None
        return self.state.status in (SagaStatus.COMPLETED, SagaStatus.COMPENSATED) or (
            self.state.status is SagaStatus.RUNNING and self.state.wake_at is None
        )


ACTIONS = (
    "deliver",
    "deliver",
    "deliver",
    "serve",
    "commit",
    "crash",
    "duplicate",
    "advance",
    "cancel",
)


def run(world: World, data: st.DataObject) -> None:
    for _ in range(data.draw(st.integers(0, 60), label="steps")):
        action = data.draw(st.sampled_from(ACTIONS))
        if action in ("deliver", "duplicate"):
            topics = [t for t, q in world.topics.items() if q]
            if topics:
                topic = data.draw(st.sampled_from(topics))
                (world.deliver if action == "deliver" else world.duplicate)(topic)
        elif action == "serve":
            names = [n for n, q in world.commands.items() if q]
            if names:
                world.serve(data.draw(st.sampled_from(names)))
        elif action == "commit":
            world.commit()
        elif action == "crash":
            world.crash()
        elif action == "cancel":
            world.cancel()
        else:
            world.advance(data.draw(st.sampled_from([0.5, 1.0, 3.0, 10.0])))
    world.settle()


def check(world: World) -> list[str]:
    problems = list(world.violations)
    state = world.state
    assert state is not None
    undoable = {n for n in world.born_ok if world.saga.step(n).step.compensate is not None}
    completed = state.status is SagaStatus.COMPLETED
    silent = any("silent" in world.outcome[p.step.name] for p in world.saga.placed)
    stuck = state.status is SagaStatus.RUNNING and state.wake_at is None and silent
    if state.status not in (SagaStatus.COMPLETED, SagaStatus.COMPENSATED) and not stuck:
        problems.append(f"ended {state.status}")
    if completed and world.failed():
        problems.append("completed although a step failed")
    expected = set() if completed or stuck else undoable
    if set(world.applied) != expected:
        problems.append(f"undone {sorted(world.applied)}, expected {sorted(expected)}")
    problems += [f"{n} undone {k} times" for n, k in world.applied.items() if k != 1]
    problems += [
        f"{n} sent with {len({i for _, i in e})} ce_ids"
        for n, e in world.emitted.items()
        if len({i for _, i in e}) != 1
    ]
    problems += [
        f"{n} fallback {k + 1} sent with {len(ids)} ce_ids"
        for (n, k), ids in world.fallbacks_sent.items()
        if len(ids) != 1
    ]
    problems += _check_cancel(world, state)
    failed = re.fullmatch(r"step '(.+)' failed \((.+)\)", state.reason or "")
    if failed is not None:
        name, event_type = failed.groups()
        last = _bad(_slot(name), len(world.saga.step(name).step.fallbacks)).event_type
        if event_type != last:
            problems.append(f"compensating on {event_type}, a failure a fallback answers")
    first = sorted((emits[0][0], name) for name, emits in world.emitted.items())
    index = {p.step.name: p.index for p in world.saga.placed}
    for position, (sent, earlier) in enumerate(first):
        for _, later in first[position + 1 :]:
            on_time = world.delay[later] != LATE and later not in world.timed_out
            if index[later] > index[earlier] and world.born_ok[later] < sent and on_time:
                problems.append(f"{later} undone after {earlier}")
    return problems


def _check_cancel(world: World, state: SagaState) -> list[str]:
    """Applied iff read while running (or before the start); reported, not applied, after
    completion."""
    read_as, cancel = world.cancel_read_as, state.cancel
    completed = state.status is SagaStatus.COMPLETED
    if read_as is SagaStatus.COMPLETED and (not completed or cancel is None or cancel.applied):
        return [f"a cancel read after completion: ended {state.status}, recorded {cancel}"]
    if read_as is SagaStatus.RUNNING and (
        completed or cancel is None or not cancel.applied or "cancelled by" not in str(state.reason)
    ):
        return [f"a cancel read while running: ended {state.status}, recorded {cancel}"]
    if read_as is SagaStatus.WAITING and completed:
        return ["a cancel read before the start: completed"]
    return []


@st.composite
def worlds(draw: st.DrawFn) -> World:
    saga = draw(definitions())
    names = [p.step.name for p in saga.placed]
    outcome = {
        p.step.name: [
            draw(st.sampled_from(["ok", "ok", "ok", "fail", "silent"]))
            for _ in range(len(p.step.fallbacks) + 1)
        ]
        for p in saga.placed
    }
    delay = {n: draw(st.sampled_from(DELAYS)) for n in names}
    gaps = {
        p.step.name: draw(st.lists(st.sampled_from(GAPS), max_size=3))
        for p in saga.placed
        if p.step.heartbeat is not None
    }
    return World(saga, outcome, delay, draw(st.integers(0, 2**SLOTS - 1)), gaps)


ANY_WORLD = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
"""How many worlds a property over ``worlds()`` draws, the same on every run."""


@ANY_WORLD
@given(worlds(), st.data())
def test_engine_holds_its_guarantees_in_any_world(world: World, data: st.DataObject) -> None:
    run(world, data)
    problems = check(world)
    assert not problems, "; ".join(problems)


# -- cases the property test found, kept as plain regression tests ------------------------------


def test_a_late_success_reopening_the_saga_waits_for_the_steps_it_started() -> None:
    """Found: after ``compensated``, s1's late success was undone at once, although the s2 it
    started could still report (an undone s0 counted as an open stage, so nothing was awaited)."""
    steps = [_step(0, True, False, False), _step(1, True, False, False)]
    steps += [_step(slot, False, False, False) for slot in (2, 3, 4)]
    saga = Saga("model", 1, Begin, steps, deadline=timedelta(seconds=20))
    delay = {"s0": 0.5, "s1": LATE, "s2": 0.5, "s3": 0.5, "s4": 0.5}
    world = World(saga, {n: ["ok"] for n in delay}, delay, 0)
    world.settle()
    assert check(world) == []
    assert world.applied == {"s0": 1, "s1": 1}


def test_a_skipped_step_that_would_have_failed_does_not_fail_the_saga() -> None:
    """Found (in the oracle): a skipped step's drawn failure counted as a failure."""
    saga = Saga("model", 1, Begin, [_step(0, True, False, True), _step(1, True, True, False)])
    world = World(saga, {"s0": ["fail"], "s1": ["ok"]}, {"s0": 0.5, "s1": 0.5}, 1)
    world.settle()
    assert world.state is not None and world.state.status is SagaStatus.COMPLETED
    assert check(world) == []
