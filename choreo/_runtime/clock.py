"""Wall time for due times (retry delays, scheduled deliveries), which tests can move on.

A running service reads ``time.time()`` and waits out a held record with a
timeout. ``choreo.testing`` sets a ``ManualClock`` in the context its service
runs in, so a test makes a week pass at once instead of waiting; the context
variable keeps that clock to that test's tasks and costs a running service one
lookup per held record.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from contextvars import ContextVar


class WallClock:
    """Real time: what every service runs on."""

    def now(self) -> float:
        """Seconds since the epoch, as due-time headers count them (in milliseconds)."""
        return time.time()

    async def sleep(self, delay_s: float, wake: asyncio.Event) -> None:
        """Until ``delay_s`` passed or ``wake`` is set (new records, a stop)."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(wake.wait(), delay_s)


class ManualClock(WallClock):
    """Stands still until ``advance_to`` moves it; held records look again only then.

    Nothing falls due while a test looks, so what it sees does not depend on how
    fast the machine runs it.
    """

    def __init__(self) -> None:
        self._now = time.time()
        self._sleepers: list[asyncio.Event] = []

    def now(self) -> float:
        return self._now

    async def sleep(self, delay_s: float, wake: asyncio.Event) -> None:
        self._sleepers.append(wake)
        try:
            await wake.wait()
        finally:
            self._sleepers.remove(wake)

    def advance_to(self, when: float) -> None:
        """Move to ``when`` (never back) and let held records look again."""
        self._now = max(self._now, when)
        for wake in self._sleepers:
            wake.set()


CLOCK: ContextVar[WallClock] = ContextVar("choreo_clock")
"""Set only where a test runs a service; everywhere else it is ``WALL``."""
WALL = WallClock()


def current_clock() -> WallClock:
    """The clock of the service running in this context."""
    return CLOCK.get(WALL)
