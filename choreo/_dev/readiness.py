"""Wait for a starting component, saying what it is doing while the wait is long.

A broker that has collected thousands of partitions (every test run leaves topics on the
local stack) spends minutes loading their logs before it answers: a fixed timeout then
fails a healthy start, and a silent wait looks like a hang. So the wait gives up only when
the component's log has been silent for ``stall_s`` (or after ``cap_s`` in all), and prints
the time so far and the log's last line every ``every_s``.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from choreo._dev.component import Component, ComponentError

TAIL_BYTES = 4096
LINE_CHARS = 140


@dataclass(frozen=True)
class Patience:
    stall_s: float = 180.0
    """Give up when the component is not ready and its log has not grown for this long."""
    cap_s: float = 900.0
    """Give up after this long in all, even while the log grows."""
    every_s: float = 15.0
    """How often a long wait says where it is."""
    poll_s: float = 0.25


def last_line(log: Path) -> str:
    """The log's last non-empty line, shortened for a terminal ('' when there is none)."""
    try:
        with log.open("rb") as handle:
            handle.seek(max(0, handle.seek(0, os.SEEK_END) - TAIL_BYTES))
            tail = handle.read().decode("utf-8", "replace")
    except OSError:
        return ""
    lines = [line.strip() for line in tail.splitlines() if line.strip()]
    if not lines:
        return ""
    line = lines[-1]
    return line if len(line) <= LINE_CHARS else line[: LINE_CHARS - 3] + "..."


def _size(log: Path) -> int:
    try:
        return log.stat().st_size
    except OSError:
        return 0


def await_ready(
    component: Component,
    log: Path,
    say: Callable[[str], None],
    process: subprocess.Popen[bytes] | None = None,
    patience: Patience = Patience(),
) -> None:
    """Return once ``component.healthy()``; raise ComponentError naming the log otherwise."""
    began = time.monotonic()
    grown_at = began
    size = _size(log)
    next_say = began + patience.every_s
    while not component.healthy():
        now = time.monotonic()
        if process is not None and process.poll() is not None:
            raise ComponentError(
                f"{component.name}: exited with code {process.returncode} while starting; "
                f"log: {log}"
            )
        if (current := _size(log)) != size:
            size, grown_at = current, now
        if now - grown_at > patience.stall_s or now - began > patience.cap_s:
            raise ComponentError(
                f"{component.name}: not ready after {now - began:.0f}s, its log silent for "
                f"{now - grown_at:.0f}s; log: {log}"
            )
        if now >= next_say:
            next_say = now + patience.every_s
            say(f"{component.name}: still starting, {now - began:.0f}s so far; {last_line(log)}")
        time.sleep(patience.poll_s)
