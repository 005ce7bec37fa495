"""Every benchmark of issue 9 in one command, one report.

Run from the project root with the stack up (``make up``)::

    .venv/bin/python bench/all.py --quick    # ~45 min on 2 cores
    .venv/bin/python bench/all.py            # hours: 1,000,000 events per consume run

In order, each its own process (one that fails is reported, the rest still run):
``compare.py`` (consume), ``compare.py --scenario relay`` (consume -> emit -> commit, at least
once and exactly once), ``latency.py`` (the relay at 5,000 events/s offered) and ``saga.py
throughput`` (the order saga through the tracker, exactly once). Their tables are concatenated
into ``bench/results/all-<time>.md``.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"


def steps(quick: bool) -> list[tuple[str, list[str]]]:
    """(title, arguments) per benchmark; ``quick`` shortens each, keeping alternated rounds."""
    size = ["--quick"] if quick else []
    latency = ["--rounds", "3", "--seconds", "10"] if quick else []
    return [
        ("Consume: decode, validate, no-op handler, commit", ["compare.py", *size]),
        (
            "Relay: consume -> emit one event -> commit (throughput)",
            ["compare.py", "--scenario", "relay", *size],
        ),
        ("Relay at a fixed offered load (latency)", ["latency.py", *latency]),
        (
            "Order saga through the tracker (choreo only, exactly once)",
            ["saga.py", "throughput", "--sagas", "5000" if quick else "20000"],
        ),
    ]


def run(arguments: list[str]) -> str:
    """One benchmark's report: the table file it wrote, or its last output lines."""
    done = subprocess.run(
        [sys.executable, str(BENCH / arguments[0]), *arguments[1:]],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    lines = done.stdout.splitlines()
    written = [line.split("written to ", 1)[1] for line in lines if "written to " in line]
    if done.returncode == 0 and written:
        return (ROOT / written[-1]).read_text()
    tail = lines[-3:] if done.returncode == 0 else (lines + done.stderr.splitlines())[-5:]
    status = "" if done.returncode == 0 else f"failed (exit {done.returncode}):\n\n"
    return status + "\n".join(f"    {line}" for line in tail) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="the shorter run of each benchmark")
    args = parser.parse_args()
    sections = [f"# issue 9 benchmarks, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC", ""]
    for title, arguments in steps(args.quick):
        print(f"running {' '.join(arguments)} ...", flush=True)
        sections += [f"## {title}", "", f"`bench/{' '.join(arguments)}`", "", run(arguments)]
    out = BENCH / "results" / f"all-{datetime.now(UTC):%Y%m%dT%H%M%S}.md"
    out.write_text("\n".join(sections))
    print(f"written to {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
