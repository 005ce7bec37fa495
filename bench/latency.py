"""End-to-end latency of consume -> emit one event -> commit, at a fixed offered load.

Run from the project root with the stack up (``make up``)::

    .venv/bin/python bench/latency.py --quick    # 5,000 events/s for 10 s, 1 round
    .venv/bin/python bench/latency.py            # 5,000 events/s for 30 s, 3 rounds

Per run: fresh source and sink topics (3 partitions each), the contender
(``bench/contenders/relay.py``) started in its own process, a warm-up until its first output
shows up (so the group join is not measured), then a paced producer offers ``--rate`` events/s
for ``--seconds``. Each event's ``choreo_correlation_id`` is its produce time in ns; a reader
of the sink (``read_committed``, so exactly-once outputs count only once committed) takes
receive time minus that. Bounded: at most ``rate * seconds`` events per run, and the contender
is stopped (SIGTERM, then SIGKILL) once its outputs are in or 30 s after the last input.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
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

from compare import rich_event  # noqa: E402

CONTENDERS = ("raw", "choreo-confluent", "choreo-aiokafka", "choreo-eos")
PARTITIONS = 3


def schemas_for(source: str, sink: str) -> Path:
    """A schemas dir routing OrderPlaced to ``source`` and StockReserved to ``sink``."""
    target = Path(tempfile.mkdtemp(prefix="choreo-latency-"))
    shutil.copytree(ROOT / "schemas" / "shop", target / "shop")
    (target / "catalog.toml").write_text(
        f'[topics."{source}"]\nevents = ["shop.orders.OrderPlaced"]\nkey = "order_id"\n'
        f"partitions = {PARTITIONS}\n\n"
        f'[topics."{sink}"]\nevents = ["shop.inventory.StockReserved"]\nkey = "order_id"\n'
        f"partitions = {PARTITIONS}\n"
    )
    return target


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
        self.consumer.close()


def one_run(args: argparse.Namespace, contender: str) -> dict[str, float]:
    """One contender, fresh topics; returns p50/p99/max latency and the share of outputs seen."""
    from confluent_kafka import Producer
    from confluent_kafka.admin import AdminClient, NewTopic

    from choreo import _headers
    from choreo._schemas import Catalog, Codec

    tag = uuid.uuid4().hex[:8]
    source, sink = f"bench-lat-in-{tag}", f"bench-lat-out-{tag}"
    admin = AdminClient({"bootstrap.servers": args.bootstrap})
    for future in admin.create_topics(
        [NewTopic(source, PARTITIONS, 1), NewTopic(sink, PARTITIONS, 1)]
    ).values():
        future.result(30)
    schemas = schemas_for(source, sink)
    codec = Codec(Catalog.load(schemas))
    templates = [rich_event(i) for i in range(1000)]
    values = [(t.order_id.encode(), codec.encode(t)) for t in templates]
    collector = Collector(args.bootstrap, sink)
    collector.start()
    command = [sys.executable, str(BENCH / "contenders" / "relay.py"), contender]
    command += ["--bootstrap", args.bootstrap, "--source", source, "--sink", sink]
    command += ["--schemas", str(schemas), "--group", f"bench-lat-{contender}-{tag}"]
    # A file, not a pipe: a chatty relay must not block. Closed in the finally below.
    errors = tempfile.TemporaryFile("w+")  # noqa: SIM115
    relay = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=errors, text=True)
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
                raise RuntimeError(
                    f"relay not ready: {(relay.stderr.read() if relay.stderr else '')[-300:]}"
                )
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
        relay.send_signal(signal.SIGTERM)
        try:
            relay.wait(30)
        except subprocess.TimeoutExpired:
            relay.kill()
            relay.wait()
        collector.running = False
        collector.join(10)
        errors.close()
        shutil.rmtree(schemas, ignore_errors=True)
    latencies = sorted(collector.latencies)
    if not latencies:
        raise RuntimeError("no output reached the sink")
    return {
        "p50": latencies[len(latencies) // 2],
        "p99": latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))],
        "max": latencies[-1],
        "seen": len(latencies) / total,
    }


def report(
    args: argparse.Namespace, runs: dict[str, list[dict[str, float]]], failures: dict[str, str]
) -> str:
    lines = [
        f"# latency benchmark, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        "",
        f"consume -> emit 1 -> commit; {args.rate:,} events/s offered for {args.seconds} s "
        f"(~{args.rate * args.seconds:,.0f} events/run), {args.rounds} alternating rounds; "
        f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}. "
        "Latency: produce -> output read back (read_committed), ms.",
        "",
        "| contender | p50 ms (median) | p99 ms (median) | p99 spread | max ms | outputs seen |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name in CONTENDERS:
        rows = runs.get(name, [])
        if not rows:
            lines.append(f"| {name} | failed: {failures.get(name, 'not run')} | | | | |")
            continue
        p99s = [r["p99"] for r in rows]
        lines.append(
            f"| {name} | {statistics.median(r['p50'] for r in rows):.1f} | "
            f"{statistics.median(p99s):.1f} | {min(p99s):.1f}-{max(p99s):.1f} | "
            f"{max(r['max'] for r in rows):.0f} | {min(r['seen'] for r in rows):.1%} |"
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
    names = args.contenders.split(",") if args.contenders else list(CONTENDERS)
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in names}
    failures: dict[str, str] = {}
    for round_no in range(1, args.rounds + 1):
        for name in names:
            try:
                result = one_run(args, name)
            except RuntimeError as exc:
                failures[name] = str(exc)[:200]
                print(f"round {round_no} {name}: failed: {exc}", flush=True)
                continue
            runs[name].append(result)
            print(
                f"round {round_no} {name}: p50 {result['p50']:.1f} ms, p99 {result['p99']:.1f} ms, "
                f"seen {result['seen']:.1%}",
                flush=True,
            )
    table = report(args, runs, failures)
    out = BENCH / "results" / f"latency-{datetime.now(UTC):%Y%m%dT%H%M%S}.md"
    out.write_text(table)
    print(table + f"\nwritten to {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
