"""Drives the saga engine without Kafka: a fake clock, and everything it emitted and logged."""

from __future__ import annotations

import saga_defs as d

from choreo import Event
from choreo.saga import Engine, Incoming, Saga, SagaState, SagaStatus, StepStatus


class Run:
    """Feeds one saga's events to an engine with a fake clock and keeps what it emitted."""

    def __init__(self, *definitions: Saga, saga_id: str = "o-1") -> None:
        self.engine = Engine(definitions or (d.order_saga,))
        self.saga_id = saga_id
        self.state: SagaState | None = None
        self.now = 1000.0
        self.emitted: list[Event] = []
        self.emits: list[object] = []
        self.logs: list[str] = []
        self._ids = 0

    def send(self, event: Event, event_id: str | None = None, **trace: str) -> Run:
        self._ids += 1
        outcome = self.engine.handle(
            self.state,
            Incoming(self.saga_id, event, event_id or f"e{self._ids}", trace),
            self.now,
        )
        return self._take(outcome)

    def advance(self, seconds: float) -> Run:
        self.now += seconds
        if self.state is not None:
            self._take(self.engine.tick(self.state, self.now))
        return self

    def _take(self, outcome: object) -> Run:
        self.state = outcome.state  # type: ignore[attr-defined]
        self.emits += outcome.emits  # type: ignore[attr-defined]
        self.emitted += [e.event for e in outcome.emits]  # type: ignore[attr-defined]
        self.logs += outcome.logs  # type: ignore[attr-defined]
        return self

    @property
    def status(self) -> SagaStatus:
        assert self.state is not None
        return self.state.status

    def types(self) -> list[type[Event]]:
        return [type(e) for e in self.emitted]

    def step(self, name: str) -> StepStatus:
        assert self.state is not None
        return self.state.steps[name].status
