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
import os
import statistics
import sys
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from consume import (  # noqa: E402
    bench_parser,
    bench_schemas,
    fill,
    parse_counted,
    print_usage,
    run_child,
    run_choreo,
)

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
    print_usage(
        lambda: run_choreo(args.bootstrap, args.topic, args.count, "confluent", args.registry)
    )


def measure(args: argparse.Namespace, topic: str) -> dict[str, float]:
    counted = ["--topic", topic, "--count", str(args.count), "--bootstrap", args.bootstrap]
    return run_child(__file__, topic, *counted, "--registry", args.registry)


def main() -> None:
    parser = bench_parser(__doc__)
    parser.add_argument("--registry", default="http://127.0.0.1:8085/apis/ccompat/v7")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parse_counted(parser)
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
