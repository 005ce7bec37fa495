"""``docker stop`` (SIGTERM) drains a service container: the record in hand finishes, offsets
are committed, the exit code is 0 within the grace period, and the next container resumes
where it stopped: nothing lost, nothing handled twice."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path
from typing import Any

from container_kit import GRACE_S, ROOT_MODULES, Engine, app, inspect, wait_for, writable_dir
from runtime.runtime_kit import fill_orders

from choreo._schemas import Catalog

COUNT = 60
LEDGER_MODULE = ROOT_MODULES / "ledger_service.py"


def test_sigterm_drains_and_the_next_container_resumes_exactly_where_it_stopped(
    engine: Engine, kafka: str, isolated_schemas: Path, tmp_path: Path
) -> None:
    fill_orders(kafka, Catalog.load(isolated_schemas), COUNT, id_prefix="drain")
    ledger = writable_dir(tmp_path / "ledger") / "ledger.txt"
    group = f"ledger-{tmp_path.name}"

    def service() -> Any:
        # Half a second a record: SIGTERM all but certainly lands inside a handler's sleep.
        return app(
            engine,
            ["choreo", "run", "ledger_service"],
            kafka,
            isolated_schemas,
            mounts={LEDGER_MODULE: "/app/ledger_service.py", ledger.parent: "/ledger"},
            CHOREO_GROUP_ID=group,
            LEDGER_FILE="/ledger/ledger.txt",
            LEDGER_DELAY_S="0.5",
        )

    first = service()
    with first:
        wrapped = first.get_wrapped_container()
        wait_for("10 records handled", lambda: len(_handled(ledger)) >= 10, 120, 0.2)
        started = time.monotonic()
        wrapped.stop(timeout=GRACE_S)
        stopped_in = time.monotonic() - started
        exit_code = int(inspect(wrapped.id, "{{.State.ExitCode}}"))
        logs = wrapped.logs().decode(errors="replace")
    by_first = len(_handled(ledger))
    print(f"first container: {by_first} handled, stopped in {stopped_in:.1f} s, exit {exit_code}")
    assert exit_code == 0, logs[-3000:]
    assert stopped_in < GRACE_S, logs[-3000:]
    assert by_first < COUNT

    second = service()
    with second:
        wait_for(f"all {COUNT} handled", lambda: len(set(_handled(ledger))) >= COUNT, 120, 0.5)
        time.sleep(2)  # a record the first container handled but did not commit would land now
    handled = _handled(ledger)
    twice = sorted(order for order, times in Counter(handled).items() if times > 1)
    assert twice == [], f"handled twice: {twice}"
    assert sorted(set(handled)) == sorted(f"o-{i}" for i in range(COUNT))


def _handled(ledger: Path) -> list[str]:
    """Order ids in the ledger, one per handling (a line is written after the handler's sleep)."""
    if not ledger.exists():
        return []
    return [line.split()[0] for line in ledger.read_text().splitlines() if line.strip()]
