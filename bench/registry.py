"""Consumption in the registry wire format beside choreo's single-object encoding.

Run from the project root with the stack up (``make up``, which runs the registry)::

    .venv/bin/python bench/registry.py --quick    # 100,000 events per format, 3 rounds

The same events go to two fresh topics, one in each format (the registry's ids registered
first); choreo (confluent transport, no-op handler, as ``consume.py``) reads each, the two
alternating within every round, and which goes first swaps from round to round. The aim: the
registry format within 10% of single-object, since ids are resolved once and the same cached
reader decodes the body. The CPU time per message is the steadier figure on a shared machine:
wall-clock rates there swing by 2x.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from consume import bench_schemas, fill, run_choreo  # noqa: E402

FORMATS = ("single-object", "registry")


def registry_encoder(topic: str, url: str) -> Callable[[Any], bytes]:
    """The encode of a codec writing ``topic`` in the registry format (registering its schema)."""
    from choreo._schemas import Catalog, Codec
    from choreo._schemas.registry_client import RegistryClient
    from choreo._schemas.registry_wire import RegistrySchemas

    schemas = bench_schemas(topic)
    catalog_file = schemas / "catalog.toml"
    catalog_file.write_text(catalog_file.read_text() + 'wire_format = "registry"\n')
    catalog = Catalog.load(schemas)
    registry = RegistrySchemas(RegistryClient(url, 10.0), catalog, auto_register=True)
    return Codec(catalog, registry=registry).encode


def child(args: argparse.Namespace) -> None:
    from contenders._common import peak_rss_mb

    began_wall, began_cpu = time.perf_counter(), time.process_time()
    run_choreo(args.bootstrap, args.topic, args.count, "confluent", args.registry)
    wall, cpu = time.perf_counter() - began_wall, time.process_time() - began_cpu
    print(json.dumps({"wall": wall, "cpu": cpu, "rss_mb": peak_rss_mb()}))


def measure(args: argparse.Namespace, topic: str) -> dict[str, float]:
    command = [sys.executable, __file__, "--child", "--topic", topic, "--count", str(args.count)]
    command += ["--bootstrap", args.bootstrap, "--registry", args.registry]
    out = subprocess.run(command, capture_output=True, text=True, check=False)
    if out.returncode:
        raise SystemExit(f"{topic} failed:\n{out.stderr[-3000:]}")
    result: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="100,000 events instead of 1,000,000")
    parser.add_argument("--count", type=int)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--bootstrap", default=os.environ.get("CHOREO_BENCH_BOOTSTRAP", "127.0.0.1:9092")
    )
    parser.add_argument("--registry", default="http://127.0.0.1:8085/apis/ccompat/v7")
    parser.add_argument("--topic")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.count = args.count or (100_000 if args.quick else 1_000_000)
    if args.child:
        child(args)
        return
    suffix = uuid.uuid4().hex[:8]
    topics = {name: f"bench-{name}-{suffix}" for name in FORMATS}
    print(f"filling {', '.join(topics.values())} with {args.count:,} events each ...", flush=True)
    sizes = {
        "single-object": fill(args.bootstrap, topics["single-object"], args.count),
        "registry": fill(
            args.bootstrap,
            topics["registry"],
            args.count,
            encode=registry_encoder(topics["registry"], args.registry),
        ),
    }
    rates: dict[str, list[float]] = {name: [] for name in FORMATS}
    cpus: dict[str, list[float]] = {name: [] for name in FORMATS}
    for round_no in range(1, args.rounds + 1):
        for name in FORMATS if round_no % 2 else FORMATS[::-1]:  # neither always goes first
            result = measure(args, topics[name])
            rates[name].append(args.count / result["wall"])
            cpus[name].append(result["cpu"] * 1_000_000 / args.count)
            print(f"round {round_no} {name}: {rates[name][-1]:,.0f} msgs/s", flush=True)
    base = statistics.median(rates["single-object"])
    base_cpu = statistics.median(cpus["single-object"])
    lines = [
        f"# registry wire format, consume, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        f"{args.count:,} OrderPlaced events per format, {args.rounds} alternating rounds, "
        f"{os.cpu_count()} cores; choreo-confluent, no-op handler",
        "",
        "| wire format | value bytes | msgs/s (median) | spread (min-max) | ratio "
        "| CPU s / 1M msgs | CPU ratio |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name in FORMATS:
        rate = statistics.median(rates[name])
        spread = f"{min(rates[name]):,.0f}-{max(rates[name]):,.0f}"
        cpu = statistics.median(cpus[name])
        lines.append(
            f"| {name} | {sizes[name]} | {rate:,.0f} | {spread} | {rate / base:.2f} "
            f"| {cpu:.1f} | {cpu / base_cpu:.2f} |"
        )
    table = "\n".join(lines) + "\n"
    out = ROOT / "bench" / "results" / f"registry-{datetime.now(UTC):%Y%m%dT%H%M%S}.md"
    out.write_text(table)
    print(table + f"\nwritten to {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
