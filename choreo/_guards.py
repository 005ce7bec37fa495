"""Protecting what a handler calls: a circuit breaker and a rate limit.

Both are gates the runtime passes *before* calling the handler, so a service
that must slow down stops taking records from the partition (its buffer fills
and backpressure pauses the partition) instead of sleeping inside handlers or
burning retries against a dependency that is down. Share one instance between
handlers that call the same downstream.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from typing import Literal, Protocol

State = Literal["closed", "open", "half-open"]


class Guard(Protocol):
    async def admit(self) -> None:
        """Return when a call may go ahead (wait while the gate is shut)."""

    def record(self, ok: bool) -> None:
        """The outcome of an admitted call."""


class CircuitBreaker:
    """Closed → open when too many recent calls failed; half-open after a cool-down.

    While open, no call is made; after ``cool_down_s`` one probe call is let
    through (half-open): success closes the breaker, failure opens it again.
    """

    def __init__(
        self,
        name: str,
        *,
        failure_rate: float = 0.5,
        window: int = 20,
        min_calls: int = 5,
        cool_down_s: float = 30.0,
    ) -> None:
        if not 0 < failure_rate <= 1 or window < 1 or min_calls < 1 or cool_down_s <= 0:
            raise ValueError(f"invalid circuit breaker settings for {name!r}")
        self.name = name
        self.failure_rate = failure_rate
        self.min_calls = min_calls
        self.cool_down_s = cool_down_s
        self.state: State = "closed"
        self.opened_at = 0.0
        self._outcomes: deque[bool] = deque(maxlen=window)
        self._probe = asyncio.Lock()

    async def admit(self) -> None:
        while self.state != "closed":
            if self.state == "open":
                wait = self.opened_at + self.cool_down_s - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
                    continue
                self.state = "half-open"
            if not self._probe.locked():
                await self._probe.acquire()  # this caller is the probe; record() releases
                return
            await asyncio.sleep(min(0.05, self.cool_down_s))

    def record(self, ok: bool) -> None:
        if self._probe.locked():
            self._probe.release()
            self._outcomes.clear()
            self._trip() if not ok else self._close()
            return
        self._outcomes.append(ok)
        failures = self._outcomes.count(False)
        calls = len(self._outcomes)
        if calls >= self.min_calls and failures / calls >= self.failure_rate:
            self._trip()

    def _trip(self) -> None:
        self.state = "open"
        self.opened_at = time.monotonic()

    def _close(self) -> None:
        self.state = "closed"


class RateLimit:
    """At most ``calls`` calls in any ``per_s`` seconds (a sliding window)."""

    def __init__(self, calls: int, per_s: float) -> None:
        if calls < 1 or per_s <= 0:
            raise ValueError("a rate limit needs calls >= 1 and per_s > 0")
        self.calls = calls
        self.per_s = per_s
        self._starts: deque[float] = deque()

    async def admit(self) -> None:
        while True:
            now = time.monotonic()
            while self._starts and now - self._starts[0] >= self.per_s:
                self._starts.popleft()
            if len(self._starts) < self.calls:
                self._starts.append(now)
                return
            await asyncio.sleep(self._starts[0] + self.per_s - now)

    def record(self, ok: bool) -> None:
        """Outcomes do not matter to a rate limit."""
