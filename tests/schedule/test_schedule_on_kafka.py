"""Two ``choreo run`` instances of a scheduled service on the real broker; the owner of the
schedule is killed -9 between ticks, then started again."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import time
import uuid
from collections import Counter
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

import pytest

pytestmark = pytest.mark.stack
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def start_instance(
    choreo_run: Callable[..., subprocess.Popen[str]], tmp_path: Path
) -> Callable[[], subprocess.Popen[str]]:
    """``choreo run tick_service``, one more instance per call; all are killed at the end."""
    env = {
        "CHOREO_SESSION_TIMEOUT_S": "6",
        "TICK_SERVICE": f"ticks{uuid.uuid4().hex[:8]}",
        "TICK_DB": str(tmp_path / "ticks.db"),
        "TICK_CALLS": str(tmp_path / "calls.log"),
    }
    return lambda: choreo_run("tick_service", path=Path(__file__).parent, **env)


def test_each_tick_runs_once_across_two_instances_and_a_kill_9(
    start_instance: Callable[[], subprocess.Popen[str]], tmp_path: Path
) -> None:
    db = tmp_path / "ticks.db"
    first, second = start_instance(), start_instance()
    by_pid = {first.pid: first, second.pid: second}
    _wait(lambda: len(_rows(db)) >= 3, 60, "three ticks")
    owner = by_pid[_rows(db)[-1][2]]
    seen = len(_rows(db))
    _wait(lambda: len(_rows(db)) > seen, 10, "the next tick")
    time.sleep(0.3)  # between two ticks (one a second)
    owner.send_signal(signal.SIGKILL)
    owner.wait(10)
    survivor = second if owner is first else first
    _wait(lambda: _count(db, survivor.pid) >= 4, 40, "ticks on the survivor")
    restarted = start_instance()
    _wait(lambda: _count(db, survivor.pid) + _count(db, restarted.pid) >= 10, 40, "ticks after")
    for process in (survivor, restarted):
        process.send_signal(signal.SIGTERM)
    for process in (survivor, restarted):
        assert process.wait(30) == 0

    rows = _rows(db)
    times = [datetime.fromisoformat(at) for at, _, _ in rows]
    calls = (tmp_path / "calls.log").read_text().splitlines()
    per_tick = Counter(times)
    skipped = sum(s for _, s, _ in rows)
    print(
        f"ticks run: {len(rows)} ({len(set(times))} distinct), handler calls: {len(calls)}, "
        f"skipped (reported by catch-up): {skipped}, per instance: "
        f"{dict(Counter(pid for _, _, pid in rows))}, killed: {owner.pid}"
    )
    assert per_tick.most_common(1)[0][1] == 1, f"a tick took effect twice: {per_tick}"
    accounted = {
        t - timedelta(seconds=k)
        for (_, s, _), t in zip(rows, times, strict=True)
        for k in range(s + 1)
    }
    span = int((max(times) - min(times)).total_seconds())
    lost = [min(times) + timedelta(seconds=k) for k in range(span + 1)]
    lost = [t for t in lost if t not in accounted]
    assert not lost, f"ticks neither run nor reported skipped: {lost}"
    assert _count(db, survivor.pid) and _count(db, owner.pid)


def _rows(db: Path) -> list[tuple[str, int, int]]:
    if not db.exists():
        return []
    with sqlite3.connect(db) as conn:
        try:
            return conn.execute("SELECT at, skipped, pid FROM ticks ORDER BY rowid").fetchall()
        except sqlite3.OperationalError:  # table not created yet
            return []


def _count(db: Path, pid: int) -> int:
    return sum(1 for _, _, who in _rows(db) if who == pid)


def _wait(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)
