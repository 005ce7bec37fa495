"""When a schedule's ticks fall: a fixed interval, or a cron line read in a time zone.

Every instance of a service must compute the same tick times without talking
to each other (a tick's id is its schedule and time, and duplicates are
recognised by it), so times come from the cadence alone, never from when a
process started: an interval's ticks lie on multiples of it since the Unix
epoch, a cron line's where the line says in its zone. Times are epoch
milliseconds, as the records carry them.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

from choreo._errors import TopologyError

MAX_COUNTED = 100_000
"""Missed cron ticks are counted one by one, up to this many (a per-second line down a day)."""


class Cadence(Protocol):
    def after(self, ms: int) -> int:
        """The first tick strictly after ``ms``."""

    def latest(self, ms: int) -> int:
        """The last tick at or before ``ms``."""

    def count(self, first: int, end: int) -> int:
        """Ticks from ``first`` (a tick) up to, not including, ``end``."""

    def local(self, ms: int) -> datetime:
        """``ms`` as an aware datetime in the cadence's zone (what handlers see)."""


class Interval:
    """Every ``step``, on the epoch grid: every 5 minutes ticks at :00, :05, ... UTC."""

    def __init__(self, step: timedelta) -> None:
        self.step_ms = round(step.total_seconds() * 1000)
        if self.step_ms < 1000:
            raise TopologyError(f"every({step!r}): the interval must be at least one second")

    def after(self, ms: int) -> int:
        return (ms // self.step_ms + 1) * self.step_ms

    def latest(self, ms: int) -> int:
        return ms // self.step_ms * self.step_ms

    def count(self, first: int, end: int) -> int:
        return max(0, -(-(end - first) // self.step_ms))

    def local(self, ms: int) -> datetime:
        return datetime.fromtimestamp(ms / 1000, UTC)

    def __str__(self) -> str:
        return f"every {timedelta(milliseconds=self.step_ms)}"


class Cron:
    """A cron line (5 fields, or 6 with seconds first) in ``zone``, daylight saving included."""

    def __init__(self, line: str, zone: str) -> None:
        try:
            self.zone = ZoneInfo(zone)
        except (ZoneInfoNotFoundError, ValueError) as error:
            raise TopologyError(f"every({line!r}, tz={zone!r}): unknown time zone") from error
        self.line = line
        try:
            CronSim(line, datetime.now(self.zone))
        except CronSimError as error:
            raise TopologyError(f"every({line!r}): not a cron line: {error}") from None

    def after(self, ms: int) -> int:
        return _ms(next(CronSim(self.line, self.local(ms))))

    def latest(self, ms: int) -> int:
        # cronsim's reverse iteration starts strictly before its time; ticks fall on whole seconds
        start = self.local(ms // 1000 * 1000 + 1000)
        return _ms(next(CronSim(self.line, start, reverse=True)))

    def count(self, first: int, end: int) -> int:
        if end <= first:
            return 0
        counted = 1
        for tick in CronSim(self.line, self.local(first)):
            if _ms(tick) >= end or counted >= MAX_COUNTED:
                break
            counted += 1
        return counted

    def local(self, ms: int) -> datetime:
        return datetime.fromtimestamp(ms / 1000, self.zone)

    def __str__(self) -> str:
        return f"{self.line!r} in {self.zone.key}"


def cadence(when: str | timedelta, tz: str | None) -> Cadence:
    """What ``Service.every`` was given, checked at declaration (so import fails, not a tick)."""
    if isinstance(when, timedelta):
        if tz is not None:
            raise TopologyError(
                f"every({when!r}, tz={tz!r}): a time zone applies to cron lines only "
                "(intervals tick on the epoch grid)"
            )
        return Interval(when)
    if isinstance(when, str):
        return Cron(when, tz or "UTC")
    raise TopologyError(f"every() takes a cron line or a timedelta, got {when!r}")


def _ms(moment: datetime) -> int:
    return round(moment.timestamp() * 1000)
