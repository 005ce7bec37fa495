"""Instructions per decoded, encoded or consumed record, counted by valgrind's callgrind: a
figure load cannot move.

```sh
.venv/bin/python bench/instructions.py               # 1,000 records, 1 and 4 passes
.venv/bin/python bench/instructions.py --coders naive-loop,choreo-service   # consume path
```

Each coder runs in its own process under ``valgrind --tool=callgrind`` twice, decoding (or
encoding) the same 1,000 ``compare.rich_event`` records (~200 B) once and then ``--passes``
times; the difference of the two totals divided by the extra records is the cost of one
record, free of start-up (imports, schema parsing, building the records), which both runs
share. Hash seeds are fixed so the two runs do the same start-up work, and the start-up heap
is frozen (`gc.freeze`) so full collections do not walk it. On a shared machine msgs/s moves
with other people's load; these counts do not.

- **naive**: what the raw loop does per record: check the 10-byte header, fastavro's
  ``schemaless_reader``, ``OrderPlaced.model_validate``.
- **choreo-validating**: ``Codec(catalog, fast=False).decoder(OrderPlaced)``: fastavro +
  pydantic.
- **choreo**: ``Codec(catalog).decoder(OrderPlaced)`` (the bound decode a service's handler
  gets): the reader generated for the writer's schema.
- **choreo-dumping-encode**: ``Codec(catalog, fast=False).encode``: what the naive relay loop
  does per output (``model_dump``, then fastavro's ``schemaless_writer`` after the 10-byte
  header) plus one dict lookup.
- **choreo-encode**: ``Codec(catalog).encode``: the writer generated for the model.

The consume pipeline, per record, from the consumer's message to the handler's return
(``--coders naive-loop,choreo-service``): the same records as ``confluent_kafka.Message``
objects, with the headers choreo's publishers write, served by ``Librdkafka`` (a stand-in for
``confluent_kafka.Consumer`` that hands out pre-built messages, so librdkafka's own fetching,
which both contenders pay alike, is not counted):

- **naive-loop**: bench/contenders/raw_confluent.py's loop: ``consume(500)``, the naive decode
  of each message's value, a no-op handler, the meter; one commit call per poll.
- **choreo-service**: bench/contenders/choreo_service.py's service run by ``ServiceRunner`` on
  the confluent transport's consumer (its worker thread, the ``Record`` wrapping), routing,
  header checks, decode, ``Context``, the handler, offset tracking; its producer (dead letters
  only) is the in-memory one. Offsets are committed on shutdown only and workers yield to the
  loop only between polls: under valgrind, ~50x slower, the time-based commit (every second)
  and yield (every 50 ms) would come ~50x more often per record than in a real run, where they
  come every ~30,000 and ~1,600 records.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
CODERS = (
    "naive",
    "choreo-validating",
    "choreo",
    "choreo-dumping-encode",
    "choreo-encode",
    "naive-loop",
    "choreo-service",
)
CONSUMERS = ("naive-loop", "choreo-service")
RECORDS = 1000


def child(coder: str, passes: int, most: int) -> None:
    """Build the records, then decode (or encode, or consume) them ``passes`` times with
    ``coder``; a consumer's messages are built for ``most`` passes in either run."""
    sys.path[:0] = [str(ROOT), str(ROOT / "bench"), str(ROOT / "bench" / "contenders")]
    if coder in CONSUMERS:
        consume(coder, passes, most)
        return
    from _common import make_decoder
    from compare import rich_event

    from choreo._schemas import Catalog, Codec
    from services.events import OrderPlaced

    catalog = Catalog.load(ROOT / "schemas")
    events = [rich_event(i) for i in range(RECORDS)]
    records: list[Any] = [Codec(catalog).encode(event) for event in events]
    run: Callable[[Any], object]
    if coder == "naive":
        run = make_decoder(OrderPlaced)
    elif coder.endswith("-encode"):
        run, records = Codec(catalog, fast=coder == "choreo-encode").encode, events
    else:
        run = Codec(catalog, fast=coder == "choreo").decoder(OrderPlaced)  # as a service does

    run(records[0])  # bind readers and writers before the counted passes in both runs alike
    # The start-up heap out of the collector's way: otherwise a full collection's walk over it
    # (more or fewer of them with the pass count, its size moving with any import) is counted.
    gc.collect()
    gc.freeze()
    for _ in range(passes):
        for value in records:
            run(value)


class Librdkafka:
    """Stands in for ``confluent_kafka.Consumer``: hands out pre-built messages.

    ``consume`` takes the next ones at once; once they are all out, it waits (a real consumer
    would wait for new records) until the handler has seen the last one, so how long the
    handling takes under valgrind does not change how many polls are counted.
    """

    def __init__(self, messages: list[Any], partitions: list[Any]) -> None:
        self.messages = messages
        self.partitions = partitions
        self.handled = threading.Event()
        self.committed: dict[tuple[str, int], int] = {}
        self._served = 0
        self._on_assign: Callable[..., None] | None = None
        self._on_revoke: Callable[..., None] | None = None

    def subscribe(self, topics: list[str], on_assign: Any = None, on_revoke: Any = None) -> None:
        self._on_assign, self._on_revoke = on_assign, on_revoke

    def consume(self, num_messages: int = 1, timeout: float = -1) -> list[Any]:
        if self._on_assign is not None:  # librdkafka calls back from inside a consume
            assign, self._on_assign = self._on_assign, None
            assign(self, self.partitions)
        batch = self.messages[self._served : self._served + num_messages]
        self._served += len(batch)
        if not batch and timeout:
            if self.handled.is_set():
                time.sleep(timeout)  # as a consumer with nothing more to read
            elif not self.handled.wait(600):
                raise RuntimeError("the handler never saw the last record")
        return batch

    def position(self, partitions: list[Any]) -> list[Any]:
        import confluent_kafka as ck

        ends = {(m.topic(), m.partition()): m.offset() + 1 for m in self.messages[: self._served]}
        return [
            ck.TopicPartition(p.topic, p.partition, ends.get((p.topic, p.partition), -1))
            for p in partitions
        ]

    def commit(self, offsets: list[Any] | None = None, asynchronous: bool = True) -> None:
        for tp in offsets or ():
            self.committed[tp.topic, tp.partition] = tp.offset

    def incremental_assign(self, partitions: list[Any]) -> None:
        """Assigned already: every message is buffered."""

    def incremental_unassign(self, partitions: list[Any]) -> None:
        """Nothing more is served after a revocation."""

    def close(self) -> None:
        if self._on_revoke is not None:
            self._on_revoke(self, self.partitions)


class Meter:
    """Counts handled events; the last one tells the consumer and calls ``done``."""

    def __init__(self, total: int, librdkafka: Librdkafka) -> None:
        self.left = total
        self.librdkafka = librdkafka
        self.done: Callable[[], None] = lambda: None

    def seen(self) -> bool:
        self.left -= 1
        if self.left:
            return False
        self.librdkafka.handled.set()
        self.done()
        return True


def consume(contender: str, passes: int, most: int) -> None:
    """Serve ``passes`` times the records as messages to ``contender`` (built for ``most``)."""
    import confluent_kafka as ck
    from compare import rich_event

    from choreo import _headers
    from choreo._schemas import Catalog, Codec
    from choreo._transport.memory import partition_for_key
    from services.events import OrderPlaced

    catalog = Catalog.load(ROOT / "schemas")
    spec = catalog.topic_of(OrderPlaced.event_type)
    encode = Codec(catalog).encode
    events = [rich_event(i) for i in range(RECORDS)]
    runs: list[list[Any]] = [[] for _ in range(spec.partitions)]
    for n in range(most * RECORDS):
        event = events[n % RECORDS]
        key = event.order_id.encode()
        partition = partition_for_key(key, spec.partitions)
        headers = _headers.event_headers(
            b"shop.orders.OrderPlaced", b"bench", _headers.new_event_id(), f"saga-{n}", None
        )
        run = runs[partition]
        run.append(
            ck.Message(
                topic=spec.name,
                partition=partition,
                offset=len(run),
                key=key,
                value=encode(event),
                headers=headers,
                timestamp=(ck.TIMESTAMP_CREATE_TIME, 1_795_000_000_000 + n),
            )
        )
    ends = {(spec.name, p): len(run) * passes // most for p, run in enumerate(runs)}
    served = [m for (_, p), end in ends.items() for m in runs[p][:end]]  # by partition
    partitions = [ck.TopicPartition(spec.name, p) for p in range(spec.partitions)]
    librdkafka = Librdkafka(served, partitions)
    meter = Meter(len(served), librdkafka)
    if contender == "naive-loop":
        naive_loop(librdkafka, meter)
    else:
        asyncio.run(choreo_service(librdkafka, meter, catalog))
        if librdkafka.committed != ends:
            raise RuntimeError(f"committed {librdkafka.committed}, handled up to {ends}")


def naive_loop(librdkafka: Librdkafka, meter: Meter) -> None:
    """bench/contenders/raw_confluent.py's ``run`` on ``librdkafka``."""
    from _common import make_decoder

    from services.events import OrderPlaced

    decode = make_decoder(OrderPlaced)

    def handle(event: Any) -> None:
        pass

    gc.collect()
    gc.freeze()  # as for the coders: see the module docstring
    done = False
    while not done:
        messages = librdkafka.consume(500, 1.0)
        for message in messages:
            if message.error() is None:
                handle(decode(message.value()))
                done = meter.seen()
        if messages:
            librdkafka.commit(asynchronous=True)
    librdkafka.commit(asynchronous=False)
    librdkafka.close()


async def choreo_service(librdkafka: Librdkafka, meter: Meter, catalog: Any) -> None:
    """bench/contenders/choreo_service.py's service on the confluent transport's consumer."""
    from unittest import mock

    import confluent_kafka as ck

    import choreo
    from choreo._runtime import worker
    from choreo._runtime.heap import tune_gc_for_serving
    from choreo._runtime.runner import ServiceRunner
    from choreo._transport.base import Membership
    from choreo._transport.confluent import ConfluentConsumer, ConfluentTransport
    from choreo._transport.memory import MemoryTransport
    from services.events import OrderPlaced

    kafka = choreo.KafkaConfig(bootstrap_servers="librdkafka.invalid:9092")

    class Transport(MemoryTransport):
        """The in-memory broker, but the confluent transport's consumer over ``librdkafka``."""

        def consumer(
            self, group_id: str, client_id: str, membership: Membership | None = None
        ) -> ConfluentConsumer:  # type: ignore[override]
            with mock.patch.object(ck, "Consumer", lambda settings: librdkafka):
                return ConfluentTransport(kafka).consumer(group_id, client_id, membership)

    svc = choreo.Service("instructions")
    stop = asyncio.Event()
    meter.done = stop.set

    @svc.on(OrderPlaced)
    def handle(event: OrderPlaced, ctx: choreo.Context) -> None:
        meter.seen()

    worker.YIELD_EVERY_S = 3600.0  # see the module docstring
    config = choreo.ServiceConfig(kafka=kafka, create_topics=False, commit_interval_s=3600.0)
    runner = ServiceRunner(svc, config, Transport(), catalog)
    await runner.start()
    tune_gc_for_serving()  # as choreo run does
    await runner.run(stop)


def count(coder: str, passes: int, most: int) -> int:
    """Instructions of one child process under callgrind."""
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    command = [
        "valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null",
        sys.executable, __file__, "--child", coder, "--passes", str(passes), "--most", str(most),
    ]  # fmt: skip
    result = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
    match = re.search(r"Collected : (\d+)", result.stderr)
    if match is None:
        raise RuntimeError(f"no instruction count from callgrind for {coder}:\n{result.stderr}")
    return int(match.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--passes", type=int, default=4)
    parser.add_argument("--coders", default=",".join(CODERS))
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--most", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.passes, args.most)
        return
    print("| coder | instructions per record | ratio to naive |")
    print("|---|---:|---:|")
    naive: dict[str, float] = {}  # per direction: the first coder of each is the baseline
    for coder in args.coders.split(","):
        extra = count(coder, args.passes, args.passes) - count(coder, 1, args.passes)
        per_record = extra / ((args.passes - 1) * RECORDS)
        direction = "consume" if coder in CONSUMERS else coder.endswith("-encode")
        baseline = naive.setdefault(str(direction), per_record)
        print(f"| {coder} | {per_record:,.0f} | {baseline / per_record:.2f} |", flush=True)


if __name__ == "__main__":
    main()
