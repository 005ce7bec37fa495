"""A service with one schedule every second, for the kill test; its effect is a row per tick.

The row shares the idempotency store's transaction, so the table holds what
took effect; the log file gets a line per call, so it also shows a tick run
twice whose second run the store rolled back (none is expected).
"""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

import choreo
from choreo._runtime.idempotency import SqliteIdempotency

store = SqliteIdempotency(os.environ["TICK_DB"])
store._connection.execute("CREATE TABLE IF NOT EXISTS ticks (at TEXT, skipped INT, pid INT)")
calls = Path(os.environ["TICK_CALLS"])
svc = choreo.Service(os.environ["TICK_SERVICE"], idempotency=store)


@svc.every(timedelta(seconds=1))
def second(tick: choreo.Tick, ctx: choreo.Context) -> None:
    with calls.open("a") as log:
        log.write(f"{tick.at.isoformat()} {os.getpid()}\n")
    ctx.db.execute(
        "INSERT INTO ticks VALUES (?, ?, ?)", (tick.at.isoformat(), tick.skipped, os.getpid())
    )
