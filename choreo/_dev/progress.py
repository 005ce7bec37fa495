"""Say what a long first-run step is doing, so a newcomer can tell progress from a hang.

Downloads and builds happen once per machine (Maven jars, the Jaeger build);
a cached run never enters a step and stays quiet. While a step runs, a line
every ``every_s`` gives the time so far and, where the step fills a
directory, how much it holds and how fast it grows.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

EVERY_S = 15.0

Say = Callable[[str], None]


def tree_bytes(root: Path) -> int:
    """Bytes under ``root`` (0 while it does not exist); files vanishing mid-walk are skipped."""
    total = 0
    for folder, _, files in os.walk(root):
        for name in files:
            try:
                total += os.lstat(os.path.join(folder, name)).st_size
            except OSError:
                continue
    return total


@contextmanager
def long_step(
    what: str, watch: Path | None = None, *, say: Say = print, every_s: float = EVERY_S
) -> Iterator[None]:
    """``with long_step("kafka: fetching jars from Maven Central", ~/.m2): ...``."""
    began = time.monotonic()
    before = tree_bytes(watch) if watch is not None else 0
    say(f"{what} (first run only; later runs reuse the cache)")
    stop = threading.Event()

    def grown(when: str = "so far") -> str:
        if watch is None:
            return ""
        size = (tree_bytes(watch) - before) / 1e6
        elapsed = max(time.monotonic() - began, 1e-3)
        return f", {size:.0f} MB {when} ({size / elapsed:.1f} MB/s)"

    def report() -> None:
        while not stop.wait(every_s):
            say(f"{what}: {time.monotonic() - began:.0f}s{grown()}")

    reporter = threading.Thread(target=report, name="choreo-progress", daemon=True)
    reporter.start()
    try:
        yield
    except BaseException:
        stop.set()
        say(f"{what}: failed after {time.monotonic() - began:.0f}s")
        raise
    finally:
        stop.set()
        reporter.join()
    say(f"{what}: done in {time.monotonic() - began:.0f}s{grown('in all')}")
