"""choreo against the frameworks users would pick instead, on the same consume work.

Run from the project root with the stack up (``make up``)::

    .venv/bin/python bench/compare.py --quick    # 100,000 events, 3 rounds
    .venv/bin/python bench/compare.py            # 1,000,000 events
    .venv/bin/python bench/compare.py --contenders raw-confluent,faust
    .venv/bin/python bench/compare.py --scenario relay --quick   # consume -> emit -> commit

It fills a fresh 3-partition topic with ~200-byte ``OrderPlaced`` events as choreo emits them,
then every contender (``bench/contenders/``) does the same per event: check the single-object
header, decode the Avro body with fastavro, validate into an ``OrderPlaced`` pydantic model,
call a no-op handler, commit the way the framework commits. ``--scenario relay`` (the second
scenario; 100,000 events, 20,000 with ``--quick``) emits one ``StockReserved`` per input to a
fresh sink topic per run, at least once and, where the contender supports it, exactly once.
Third-party frameworks run in their own pinned venvs (``bench/venvs.py``); each run is its own
process, contenders alternate within each round, and the table shows the median and the spread.
A contender that cannot be installed or fails a run is a row saying why, not the end of the
benchmark.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(BENCH))

from consume import fill  # noqa: E402
from venvs import VenvError, ensure  # noqa: E402

PARTITIONS = 3
CHILD = BENCH / "contenders" / "_common.py"


@dataclass
class Contender:
    """One row: where it runs (``venv`` None = choreo's own) and which module runs it."""

    name: str
    venv: str | None
    module: str
    baseline: str = "raw-confluent"
    """The raw loop of the same guarantee this row's ratio is to."""
    python: str = sys.executable
    failure: str = ""
    runs: list[dict[str, float]] = field(default_factory=list)


def contenders(scenario: str = "consume") -> list[Contender]:
    if scenario == "relay":
        eos = "raw-confluent-eos"
        return [
            Contender("raw-confluent", None, "raw_confluent"),
            Contender("choreo-confluent", None, "choreo_service:confluent"),
            Contender("choreo-aiokafka", None, "choreo_service:aiokafka"),
            Contender("faststream-aiokafka-ack", "faststream", "faststream_app:kafka-ack"),
            Contender("faststream-confluent-ack", "faststream", "faststream_app:confluent-ack"),
            Contender("faust", "faust", "faust_app"),
            Contender("quixstreams", "quixstreams", "quix_app"),
            Contender(eos, None, "raw_confluent:eos", eos),
            Contender(f"{eos}-1s", None, "raw_confluent:eos-1s", eos),
            Contender("choreo-confluent-eos", None, "choreo_service:confluent-eos", eos),
            Contender("faust-eos", "faust", "faust_app:eos", eos),
            Contender("quixstreams-eos", "quixstreams", "quix_app:eos", eos),
        ]
    return [
        Contender("raw-confluent", None, "raw_confluent"),
        Contender("choreo-confluent", None, "choreo_service:confluent"),
        Contender("choreo-aiokafka", None, "choreo_service:aiokafka"),
        Contender("faststream-aiokafka", "faststream", "faststream_app:kafka"),
        Contender("faststream-confluent", "faststream", "faststream_app:confluent"),
        Contender("faststream-aiokafka-ack", "faststream", "faststream_app:kafka-ack"),
        Contender("faststream-confluent-ack", "faststream", "faststream_app:confluent-ack"),
        Contender("faust", "faust", "faust_app"),
        Contender("quixstreams", "quixstreams", "quix_app"),
    ]


def rich_event(i: int) -> Any:
    """A realistic ~200-byte order: four lines, a two-line address, a coupon."""
    from services.events import Address, LineItem, OrderPlaced

    items = [
        LineItem(sku=f"SKU-{(i + n) % 997:05d}-{size}", quantity=1 + (i + n) % 4, unit_price=price)
        for n, (size, price) in enumerate(
            [("M", Decimal("19.99")), ("L", Decimal("34.50")), ("XS", Decimal("7.25"))]
        )
    ]
    items.append(LineItem(sku="SKU-GIFT-WRAP", quantity=1, unit_price=Decimal("2.50")))
    total = sum((item.unit_price * item.quantity for item in items), Decimal("0"))
    return OrderPlaced(
        order_id=f"order-{i:010d}",
        customer_id=f"customer-{i % 50_000:06d}",
        items=items,
        total=total,
        currency="EUR",
        shipping_address=Address(
            line1=f"{1 + i % 180} Rue du Faubourg Saint-Honore",
            line2="Batiment B, 3e etage",
            city="Paris",
            postal_code=f"750{i % 20 + 1:02d}",
            country="FR",
        ),
        placed_at=datetime(2026, 11, 21, 12, 0, tzinfo=UTC),
        coupon_code="WINTER-2026" if i % 3 else None,
    )


def measure(args: argparse.Namespace, contender: Contender) -> dict[str, float]:
    """One run in its own process; returns its result line or raises RuntimeError(reason)."""
    command = [
        contender.python,
        str(CHILD),
        contender.module,
        "--bootstrap",
        args.bootstrap,
        "--topic",
        args.topic,
        "--count",
        str(args.count),
        "--group",
        f"bench-{contender.name}-{uuid.uuid4().hex[:6]}",
    ]
    timeout = 60 + args.count / 1000
    if args.scenario == "relay":  # a fresh sink per run; the slowest relay ~500 msgs/s
        command += [
            "--sink",
            create_topic(args.bootstrap, f"{args.topic}-out-{uuid.uuid4().hex[:6]}"),
        ]
        timeout = 60 + args.count / 250
    with tempfile.TemporaryFile("w+") as stderr:
        proc = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=stderr, text=True, start_new_session=True
        )
        timer = threading.Timer(timeout, lambda: os.killpg(proc.pid, signal.SIGKILL))
        timer.start()
        result = None
        assert proc.stdout is not None
        for line in proc.stdout:
            if '{"wall"' in line:  # a framework's logger may prefix the line
                result = json.loads(line[line.index('{"wall"') :])
                break
        try:
            proc.wait(20)  # its shutdown is not measured, but must not pile up processes
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        timed_out = not timer.is_alive() and result is None
        timer.cancel()
        if result is not None:
            return result
        stderr.seek(0)
        lines = [line.strip() for line in stderr.read().splitlines() if line.strip()]
    if timed_out:
        raise RuntimeError(f"no result within {timeout:.0f} s")
    raise RuntimeError(f"exit {proc.returncode}: {(lines or ['no output'])[-1][:160]}")


def create_topic(bootstrap: str, name: str) -> str:
    """A fresh ``PARTITIONS``-partition topic (some frameworks will not create one)."""
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap})
    for future in admin.create_topics([NewTopic(name, PARTITIONS, 1)]).values():
        future.result(30)
    return name


def versions(venv: str | None) -> str:
    """The framework and client versions a contender ran, from its venv's ``pip freeze``."""
    wanted = ("faststream", "faust-streaming", "quixstreams", "aiokafka", "confluent-kafka")
    wanted += ("pydantic", "fastavro")
    if venv is None:
        from importlib.metadata import version

        return ", ".join(f"{p} {version(p)}" for p in ("confluent-kafka", "aiokafka", "pydantic"))
    freeze = BENCH / ".venvs" / venv / "freeze.txt"
    if not freeze.exists():
        return "not installed"
    pins = dict(line.split("==", 1) for line in freeze.read_text().splitlines() if "==" in line)
    return ", ".join(f"{p} {pins[p]}" for p in wanted if p in pins)


def report(args: argparse.Namespace, size: int, rows: list[Contender]) -> str:
    rates = {
        c.name: statistics.median(args.count / r["wall"] for r in c.runs) for c in rows if c.runs
    }
    steadies = {
        c.name: statistics.median(args.count / r["steady"] for r in c.runs) for c in rows if c.runs
    }
    cpus = {c.name: statistics.median(r["steady_cpu"] for r in c.runs) for c in rows if c.runs}
    work = "consume" if args.scenario == "consume" else "consume -> emit 1 StockReserved -> commit"
    lines = [
        f"# compare benchmark ({args.scenario}), {datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        "",
        f"{work}; ratio to the raw loop of the same guarantee; "
        f"{args.count:,} OrderPlaced events (~{size} B Avro body, {PARTITIONS} partitions), "
        f"{args.rounds} alternating rounds; {platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}. msgs/s counts from process start (imports, "
        "group join) to the last event handled; steady msgs/s from the first event to the last; "
        "CPU is the process's user+system time to the last event (steady: from the first); "
        "load is the 1-minute load average when each run started (min-max).",
        "",
        "| contender | msgs/s (median) | spread (min-max) | ratio to raw | steady msgs/s "
        "| steady spread | steady ratio | CPU us / record | steady CPU us / record | CPU ratio "
        "| peak RSS MB | load |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for c in rows:
        if not c.runs:
            lines.append(f"| {c.name} | failed: {c.failure} |" + " |" * 11)
            continue
        each = [args.count / r["wall"] for r in c.runs]
        rate = statistics.median(each)
        raw_rate = rates.get(c.baseline)
        steady_each = [args.count / r["steady"] for r in c.runs]
        steady = steadies[c.name]
        cpu = statistics.median(r["cpu"] for r in c.runs) * 1_000_000 / args.count
        steady_cpu = cpus[c.name] * 1_000_000 / (args.count - 1)
        rss = max(r["rss_mb"] for r in c.runs)
        loads = [r.get("load", 0.0) for r in c.runs]
        ratio = f"{rate / raw_rate:.2f}" if raw_rate else "n/a"
        # CPU ratio: the raw loop's steady CPU per record over this row's (above 1: cheaper).
        steady_ratio = f"{steady / steadies[c.baseline]:.2f}" if c.baseline in steadies else "n/a"
        cpu_ratio = f"{cpus[c.baseline] / cpus[c.name]:.2f}" if c.baseline in cpus else "n/a"
        note = f" ({len(c.runs)} of {args.rounds} runs; {c.failure})" if c.failure else ""
        lines.append(
            f"| {c.name}{note} | {rate:,.0f} | {min(each):,.0f}-{max(each):,.0f} | {ratio} | "
            f"{steady:,.0f} | {min(steady_each):,.0f}-{max(steady_each):,.0f} | {steady_ratio} | "
            f"{cpu:.1f} | {steady_cpu:.1f} | {cpu_ratio} | {rss:.0f} | "
            f"{min(loads):.1f}-{max(loads):.1f} |"
        )
    lines += ["", "Versions:", ""]
    seen: set[str | None] = set()
    for c in rows:
        if c.venv not in seen:
            seen.add(c.venv)
            lines.append(f"- {c.venv or 'choreo venv'}: {versions(c.venv)}")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="100,000 events (relay: 20,000)")
    parser.add_argument("--scenario", choices=["consume", "relay"], default="consume")
    parser.add_argument("--count", type=int)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--contenders", help="comma-separated names (default: all)")
    parser.add_argument(
        "--bootstrap", default=os.environ.get("CHOREO_BENCH_BOOTSTRAP", "127.0.0.1:9092")
    )
    args = parser.parse_args()
    full, quick = (100_000, 20_000) if args.scenario == "relay" else (1_000_000, 100_000)
    args.count = args.count or (quick if args.quick else full)
    rows = contenders(args.scenario)
    if args.contenders:
        wanted = args.contenders.split(",")
        rows = [c for c in rows if c.name in wanted]
    for c in rows:
        if c.venv:
            try:
                c.python = str(ensure(c.venv))
            except VenvError as exc:
                c.failure = f"install: {exc}"
    args.topic = f"bench-compare-{uuid.uuid4().hex[:8]}"
    print(f"filling {args.topic} with {args.count:,} events ...", flush=True)
    size = fill(args.bootstrap, args.topic, args.count, rich_event)
    for round_no in range(1, args.rounds + 1):
        for c in rows:
            if c.failure.startswith("install"):
                continue
            load = os.getloadavg()[0]  # other people's work on the machine, for the table
            try:
                result = measure(args, c)
                result["load"] = load
            except RuntimeError as exc:
                c.failure = str(exc)
                print(f"round {round_no} {c.name}: failed: {exc}", flush=True)
                continue
            c.runs.append(result)
            rate = args.count / result["wall"]
            print(f"round {round_no} {c.name}: {rate:,.0f} msgs/s", flush=True)
    table = report(args, size, rows)
    prefix = "compare" if args.scenario == "consume" else "relay"
    out = BENCH / "results" / f"{prefix}-{datetime.now(UTC):%Y%m%dT%H%M%S}.md"
    out.write_text(table)
    print(table + f"\nwritten to {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
