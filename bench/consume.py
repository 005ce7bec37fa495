"""Consumption throughput: a raw confluent-kafka loop vs choreo on each transport.

Run from the project root with the stack up (``make up``)::

    .venv/bin/python bench/consume.py            # 1,000,000 events, 3 rounds
    .venv/bin/python bench/consume.py --quick    # 100,000 events

Every contender does the same work per event: decode the Avro single-object
body with fastavro, validate it into the ``OrderPlaced`` pydantic model, call
a no-op handler, commit offsets. Each run is its own process (so peak RSS is
its own) and contenders alternate within each round (A B C, A B C ...) so a
noisy machine hurts them alike; the table shows the median and the spread.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import platform
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CONTENDERS = ("raw-confluent", "choreo-confluent", "choreo-aiokafka")
PARTITIONS = 3


def sample_event(i: int) -> Any:
    from services.events import Address, LineItem, OrderPlaced

    return OrderPlaced(
        order_id=f"order-{i:08d}",
        customer_id=f"customer-{i % 5000:05d}",
        items=[
            LineItem(sku=f"SKU-{i % 100:04d}", quantity=1 + i % 3, unit_price=Decimal("19.99")),
            LineItem(sku="SKU-GIFT-WRAP", quantity=1, unit_price=Decimal("2.50")),
        ],
        total=Decimal("42.48"),
        currency="EUR",
        shipping_address=Address(
            line1="12 Rue de la Paix", city="Paris", postal_code="75002", country="FR"
        ),
        placed_at=datetime(2026, 11, 21, 12, 0, tzinfo=UTC),
    )


def bench_schemas(topic: str, sink: str | None = None) -> Path:
    """A schemas dir whose catalog puts OrderPlaced on the bench's own fresh topic.

    With ``sink``, StockReserved goes there (the relay scenario's output).
    """
    import shutil
    import tempfile

    target = Path(tempfile.gettempdir()) / f"choreo-bench-{topic}{f'-{sink}' if sink else ''}"
    if not target.exists():
        shutil.copytree(ROOT / "schemas" / "shop", target / "shop")
        catalog = (
            f'[topics."{topic}"]\nevents = ["shop.orders.OrderPlaced"]\nkey = "order_id"\n'
            f"partitions = {PARTITIONS}\n"
        )
        if sink:
            catalog += (
                f'\n[topics."{sink}"]\nevents = ["shop.inventory.StockReserved"]\n'
                f'key = "order_id"\npartitions = {PARTITIONS}\n'
            )
        (target / "catalog.toml").write_text(catalog)
    return target


def fill(
    bootstrap: str,
    topic: str,
    count: int,
    make_event: Callable[[int], Any] | None = None,
    encode: Callable[[Any], bytes] | None = None,
) -> int:
    """Produce ``count`` events exactly as choreo emits them; returns the mean value size.

    1,000 distinct events (``make_event(i)``, ``sample_event`` by default) are
    encoded once (``encode``, the single-object codec by default) and cycled, so
    filling is not what the run measures.
    """
    from confluent_kafka import Producer
    from confluent_kafka.admin import AdminClient, NewTopic

    from choreo import _headers
    from choreo._schemas import Catalog, Codec

    admin = AdminClient({"bootstrap.servers": bootstrap})
    for future in admin.create_topics([NewTopic(topic, PARTITIONS, 1)]).values():
        future.result(30)
    codec = Codec(Catalog.load(bench_schemas(topic)))
    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "linger.ms": 50,
            "batch.size": 1_000_000,
            "queue.buffering.max.messages": 500_000,
            "compression.type": "lz4",
        }
    )
    templates = [(make_event or sample_event)(i) for i in range(1000)]
    encoded = [(event.order_id.encode(), (encode or codec.encode)(event)) for event in templates]
    size = 0
    for i in range(count):
        key, value = encoded[i % 1000]
        size += len(value)
        headers = _headers.event_headers(
            b"shop.orders.OrderPlaced", b"bench", str(uuid.uuid4()), f"saga-{i}", None
        )
        while True:
            try:
                producer.produce(topic, key=key, value=value, headers=headers)
                break
            except BufferError:
                producer.poll(0.1)
        producer.poll(0)
    producer.flush(120)
    return size // count


def run_raw(bootstrap: str, topic: str, count: int) -> None:
    """The floor: confluent-kafka consume(), fastavro decode, pydantic validate, commit."""
    import fastavro
    from confluent_kafka import Consumer, KafkaError, KafkaException

    from choreo._schemas import Catalog
    from services.events import OrderPlaced

    schema = Catalog.load(ROOT / "schemas").latest("shop.orders.OrderPlaced").schema
    reader = fastavro.schemaless_reader
    validate = OrderPlaced.model_validate
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"bench-raw-{uuid.uuid4().hex[:6]}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([topic])
    seen = 0
    while seen < count:
        messages = consumer.consume(500, 1.0)
        for message in messages:
            if message.error() is None:
                event = validate(reader(io.BytesIO(message.value()[10:]), schema, None))
                assert event.order_id
                seen += 1
        if messages:
            consumer.commit(asynchronous=True)
    try:
        consumer.commit(asynchronous=False)
    except KafkaException as error:  # _NO_OFFSET: the last asynchronous commit had it all
        if error.args[0].code() != KafkaError._NO_OFFSET:
            raise
    consumer.close()


def run_choreo(
    bootstrap: str, topic: str, count: int, transport: str, registry: str | None = None
) -> None:
    """choreo's runtime with a no-op sync handler on the chosen transport (reading
    registry-framed records through ``registry`` when given)."""
    import choreo
    from choreo._config import SchemaRegistryConfig
    from choreo._runtime.runner import ServiceRunner
    from choreo._schemas import Catalog
    from choreo._transport.registry import make_transport
    from services.events import OrderPlaced

    catalog = Catalog.load(bench_schemas(topic))
    svc = choreo.Service(f"bench-{uuid.uuid4().hex[:6]}")
    stop = asyncio.Event()
    seen = 0

    @svc.on(OrderPlaced)
    def handle(event: OrderPlaced, ctx: choreo.Context) -> None:
        nonlocal seen
        seen += 1
        if seen >= count:
            stop.set()

    extra: dict[str, Any] = {}
    if registry:  # a config naming a registry reads registry-framed records
        extra["schema_registry"] = SchemaRegistryConfig(url=registry)

    async def main() -> None:
        config = choreo.ServiceConfig(
            kafka=choreo.KafkaConfig(bootstrap_servers=bootstrap),
            transport=transport,  # type: ignore[arg-type]
            create_topics=False,
            **extra,
        )
        runner = ServiceRunner(svc, config, make_transport(transport, config.kafka), catalog)
        await runner.start()
        await runner.run(stop)

    asyncio.run(main())


def child(args: argparse.Namespace) -> None:
    if args.contender == "raw-confluent":
        print_usage(lambda: run_raw(args.bootstrap, args.topic, args.count))
    else:
        transport = args.contender.split("-", 1)[1]
        print_usage(lambda: run_choreo(args.bootstrap, args.topic, args.count, transport))


def print_usage(run: Callable[[], None]) -> None:
    """Run the measured work and print its wall time, CPU time and peak RSS as one JSON line
    (what ``run_child`` reads back from the child process)."""
    began_wall, began_cpu = time.perf_counter(), time.process_time()
    run()
    wall, cpu = time.perf_counter() - began_wall, time.process_time() - began_cpu
    from contenders._common import peak_rss_mb  # VmHWM: ru_maxrss survives execve

    print(json.dumps({"wall": wall, "cpu": cpu, "rss_mb": peak_rss_mb()}))


def run_child(script: str, what: str, *args: str) -> dict[str, float]:
    """``script --child ARGS`` in a process of its own (its peak RSS is its own): its usage."""
    out = subprocess.run(
        [sys.executable, script, "--child", *args], capture_output=True, text=True, check=False
    )
    if out.returncode:
        raise SystemExit(f"{what} failed:\n{out.stderr[-3000:]}")
    result: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def measure(args: argparse.Namespace, contender: str) -> dict[str, float]:
    counted = ["--topic", args.topic, "--count", str(args.count), "--bootstrap", args.bootstrap]
    return run_child(__file__, contender, contender, *counted)


def report(args: argparse.Namespace, size: int, runs: dict[str, list[dict[str, float]]]) -> str:
    raw_rate = statistics.median(args.count / r["wall"] for r in runs["raw-confluent"])
    lines = [
        f"# consume benchmark, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        f"{args.count:,} OrderPlaced events (~{size} B Avro body, {PARTITIONS} partitions), "
        f"{args.rounds} alternating rounds; {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} cores, Python {platform.python_version()}",
        "",
        "| contender | msgs/s (median) | spread (min-max) | ratio to raw "
        "| CPU s / 1M msgs | peak RSS MB |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name in CONTENDERS:
        rates = [args.count / r["wall"] for r in runs[name]]
        rate = statistics.median(rates)
        cpu = statistics.median(r["cpu"] for r in runs[name]) * 1_000_000 / args.count
        rss = max(r["rss_mb"] for r in runs[name])
        lines.append(
            f"| {name} | {rate:,.0f} | {min(rates):,.0f}-{max(rates):,.0f} | "
            f"{rate / raw_rate:.2f} | {cpu:.1f} | {rss:.0f} |"
        )
    return "\n".join(lines) + "\n"


def bench_parser(doc: str) -> argparse.ArgumentParser:
    """The options of a benchmark that consumes counted events (``doc``: its module's)."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="100,000 events instead of 1,000,000")
    parser.add_argument("--count", type=int)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--bootstrap", default=os.environ.get("CHOREO_BENCH_BOOTSTRAP", "127.0.0.1:9092")
    )
    parser.add_argument("--topic")
    return parser


def parse_counted(parser: argparse.ArgumentParser) -> argparse.Namespace:
    """The arguments, with ``count`` set: given, or as ``--quick`` says."""
    args = parser.parse_args()
    args.count = args.count or (100_000 if args.quick else 1_000_000)
    return args


def main() -> None:
    parser = bench_parser(__doc__)
    parser.add_argument("--child", dest="contender", choices=CONTENDERS, help=argparse.SUPPRESS)
    args = parse_counted(parser)
    if args.contender:
        child(args)
        return
    args.topic = f"bench-orders-{uuid.uuid4().hex[:8]}"
    print(f"filling {args.topic} with {args.count:,} events ...", flush=True)
    size = fill(args.bootstrap, args.topic, args.count)
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in CONTENDERS}
    for round_no in range(1, args.rounds + 1):
        for name in CONTENDERS:
            result = measure(args, name)
            runs[name].append(result)
            print(f"round {round_no} {name}: {args.count / result['wall']:,.0f} msgs/s", flush=True)
    table = report(args, size, runs)
    out = ROOT / "bench" / "results" / f"consume-{datetime.now(UTC):%Y%m%dT%H%M%S}.md"
    out.write_text(table)
    print(table + f"\nwritten to {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
