"""End-to-end latency of consume -> emit one event -> commit, at a fixed offered load.

Run from the project root with the stack up (``make up``)::

    .venv/bin/python bench/latency.py --quick    # 5,000 events/s for 10 s, 1 round
    .venv/bin/python bench/latency.py            # 5,000 events/s for 30 s, 3 rounds

Per run: fresh source and sink topics (3 partitions each), the contender (the relay of
``compare.py --scenario relay``: ``bench/contenders/``, each in its own venv) started in its own
process, a warm-up until its first output shows up (so the group join is not measured), then a
paced producer offers ``--rate`` events/s for ``--seconds``. Each event's
``choreo_correlation_id`` is its produce time in ns, which every contender copies onto its
output; a reader of the sink (``read_committed``, so exactly-once outputs count only once
committed) takes receive time minus that. Bounded: at most ``rate * seconds`` events per run,
and the contender is stopped (SIGTERM, then SIGKILL) once its outputs are in or 30 s after the
last input. A contender slower than the offered rate shows fewer than 100% of its outputs: its
latencies are then queueing delay over the outputs that made it.
"""

from __future__ import annotations

import argparse
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(BENCH))

from compare import CHILD, Contender, contenders, create_topic, rich_event  # noqa: E402
from consume import bench_schemas  # noqa: E402
from venvs import VenvError, ensure  # noqa: E402


class Collector(threading.Thread):
    """Reads the sink and keeps one latency (ms) per measured output, warm-ups apart."""

    def __init__(self, bootstrap: str, sink: str) -> None:
        super().__init__(daemon=True)
        from confluent_kafka import Consumer

        self.consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": f"latency-reader-{uuid.uuid4().hex[:6]}",
                "auto.offset.reset": "earliest",
                "enable.auto.commit": False,
                "isolation.level": "read_committed",
            }
        )
        self.consumer.subscribe([sink])
        self.latencies: list[float] = []
        self.last = 0.0
        """``time.monotonic()`` when the last measured output arrived."""
        self.warm = threading.Event()
        self.running = True

    def run(self) -> None:
        while self.running:
            for message in self.consumer.consume(500, 0.05):
                if message.error() is not None:
                    continue
                now = time.time_ns()
                correlation = dict(message.headers() or []).get("choreo_correlation_id", b"")
                if correlation.startswith(b"w"):
                    self.warm.set()
                elif correlation.startswith(b"t"):
                    self.latencies.append((now - int(correlation[1:])) / 1e6)
                    self.last = time.monotonic()
        self.consumer.close()


def one_run(args: argparse.Namespace, contender: Contender) -> dict[str, float]:
    """One contender, fresh topics; returns p50/p99/max latency and the share of outputs seen."""
    from confluent_kafka import Producer

    from choreo import _headers
    from choreo._schemas import Catalog, Codec

    tag = uuid.uuid4().hex[:8]
    source = create_topic(args.bootstrap, f"bench-lat-in-{tag}")
    sink = create_topic(args.bootstrap, f"bench-lat-out-{tag}")
    codec = Codec(Catalog.load(bench_schemas(source)))
    templates = [rich_event(i) for i in range(1000)]
    values = [(t.order_id.encode(), codec.encode(t)) for t in templates]
    collector = Collector(args.bootstrap, sink)
    collector.start()
    command = [contender.python, str(CHILD), contender.module, "--bootstrap", args.bootstrap]
    command += ["--topic", source, "--sink", sink, "--count", "0"]
    command += ["--group", f"bench-lat-{contender.name}-{tag}"]
    # A file, not a pipe: a chatty relay must not block. Closed in the finally below.
    errors = tempfile.TemporaryFile("w+")  # noqa: SIM115
    relay = subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=errors, text=True, start_new_session=True
    )
    producer = Producer({"bootstrap.servers": args.bootstrap, "linger.ms": 1})

    def send(i: int, mark: str) -> None:
        key, value = values[i % 1000]
        headers = _headers.event_headers(
            b"shop.orders.OrderPlaced", b"bench", str(uuid.uuid4()), f"{mark}{time.time_ns()}", None
        )
        producer.produce(source, value, key, headers=headers)
        producer.poll(0)

    try:
        deadline = time.monotonic() + 60
        while not collector.warm.is_set():  # one event per 50 ms until the relay answers
            if time.monotonic() > deadline or relay.poll() is not None:
                errors.seek(0)
                raise RuntimeError(f"relay not ready: {errors.read()[-300:]}")
            send(0, "w")
            time.sleep(0.05)
        time.sleep(1)
        total = int(args.rate * args.seconds)
        began = time.monotonic()
        for i in range(total):
            while (i / args.rate) > time.monotonic() - began:
                time.sleep(0.0005)
            send(i, "t")
        producer.flush(30)
        deadline = time.monotonic() + 30
        while len(collector.latencies) < total and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        os.killpg(relay.pid, signal.SIGTERM)
        try:
            relay.wait(10)  # its shutdown is not measured
        except subprocess.TimeoutExpired:
            os.killpg(relay.pid, signal.SIGKILL)
            relay.wait()
        collector.running = False
        collector.join(10)
        errors.close()
    latencies = sorted(collector.latencies)
    if not latencies:
        raise RuntimeError("no output reached the sink")
    return {
        "rate": len(latencies) / (collector.last - began),
        "p50": latencies[len(latencies) // 2],
        "p99": latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))],
        "max": latencies[-1],
        "seen": len(latencies) / total,
    }


def report(args: argparse.Namespace, rows: list[Contender], failures: dict[str, str]) -> str:
    lines = [
        f"# latency benchmark, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        "",
        f"consume -> emit 1 -> commit; {args.rate:,} events/s offered for {args.seconds} s "
        f"(~{args.rate * args.seconds:,.0f} events/run), {args.rounds} alternating rounds; "
        f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}. "
        "Latency: produce -> output read back (read_committed), ms. Outputs/s: measured outputs "
        "over the time from the first paced input to the last output read.",
        "",
        "| contender | p50 ms (median) | p99 ms (median) | p99 spread | max ms | outputs/s "
        "| outputs seen |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for c in rows:
        if not c.runs:
            lines.append(f"| {c.name} | failed: {failures.get(c.name, 'not run')} | | | | | |")
            continue
        p99s = [r["p99"] for r in c.runs]
        lines.append(
            f"| {c.name} | {statistics.median(r['p50'] for r in c.runs):,.1f} | "
            f"{statistics.median(p99s):,.1f} | {min(p99s):,.1f}-{max(p99s):,.1f} | "
            f"{max(r['max'] for r in c.runs):,.0f} | "
            f"{statistics.median(r['rate'] for r in c.runs):,.0f} | "
            f"{min(r['seen'] for r in c.runs):.1%} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="10 s per run, 1 round")
    parser.add_argument("--rate", type=int, default=5000, help="events offered per second")
    parser.add_argument("--seconds", type=float)
    parser.add_argument("--rounds", type=int)
    parser.add_argument("--contenders", help="comma-separated names (default: all)")
    parser.add_argument(
        "--bootstrap", default=os.environ.get("CHOREO_BENCH_BOOTSTRAP", "127.0.0.1:9092")
    )
    args = parser.parse_args()
    args.seconds = args.seconds or (10 if args.quick else 30)
    args.rounds = args.rounds or (1 if args.quick else 3)
    rows = contenders("relay")
    if args.contenders:
        rows = [c for c in rows if c.name in args.contenders.split(",")]
    failures: dict[str, str] = {}
    for c in rows:
        if c.venv:
            try:
                c.python = str(ensure(c.venv))
            except VenvError as exc:
                failures[c.name] = f"install: {exc}"
    for round_no in range(1, args.rounds + 1):
        for c in rows:
            if failures.get(c.name, "").startswith("install"):
                continue
            try:
                result = one_run(args, c)
            except Exception as exc:  # a run that fails is a row saying why, not the end
                reason = str(exc) if isinstance(exc, RuntimeError) else repr(exc)
                failures[c.name] = reason[:200]
                print(f"round {round_no} {c.name}: failed: {reason}", flush=True)
                continue
            c.runs.append(result)
            print(
                f"round {round_no} {c.name}: p50 {result['p50']:.1f} ms, p99 {result['p99']:.1f} "
                f"ms, {result['rate']:,.0f} outputs/s, seen {result['seen']:.1%}",
                flush=True,
            )
    table = report(args, rows, failures)
    out = BENCH / "results" / f"latency-{datetime.now(UTC):%Y%m%dT%H%M%S}.md"
    out.write_text(table)
    print(table + f"\nwritten to {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
