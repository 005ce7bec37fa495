"""Scale out: one instance against two, as users deploy them (same group, separate processes).

Run from the project root with the stack up (``make up``); loopback only, bounded::

    .venv/bin/python bench/scale.py                        # services and tracker, 1/2/1/2
    .venv/bin/python bench/scale.py --what service --events 150000 --rounds 3
    .venv/bin/python bench/scale.py --what tracker --sagas 8000
    .venv/bin/python bench/scale.py --what service --handler-ms 1 --events 12000

**service**: fills a fresh ``--partitions`` topic with ``--events`` ~200-byte ``OrderPlaced``
events (``compare.rich_event``, ``consume.fill``), then consumes it with 1 and with 2 instances
of ``choreo run bench.scale_targets:service`` (a no-op handler with a meter), a fresh group
each run, alternating 1/2/1/2; ``--handler-ms`` makes the handler block that long per record,
as a database call would (waiting, not computing: what scales past the cores).

**tracker**: per run, fresh topics filled with the events of ``--sagas`` sagas by
``bench/saga.py`` (its catalog copy, its saga definition, its fill and its responder, with the
topics widened to ``--partitions``), then 1 or 2 ``choreo saga run
bench.scale_targets:order_saga`` processes (exactly once, a transaction per batch) until every
saga is terminal, which the harness reads from the changelog.

Every child imports its target, then waits at a gate (``bench/scale_targets.py``). With two
instances the harness lets the first in, and the second as soon as the first has handled (or
decided) its first record: so the second joins a group that is consuming, as when a user scales
out, and the run shows what the rebalance costs:

- **records**: handled (service: more than the events if a rebalance redelivered some;
  tracker: the saga events decided);
- **steady msgs/s**: records from the first handled to the last, across instances;
- **both msgs/s**: the records handled after the second instance's first one, over that time:
  the rate of two instances once both run;
- **CPU us/record**: the instances' CPU over the records (services: from each one's first record
  to its last; trackers: from each one's gate to the end, so start-up, restore and the idle poll
  count; the first instance's start-up is printed beside);
- **split**: the partitions each instance ended with (and records handled per instance);
- **pause**: the longest time no instance handled anything after the second one was let in, and
  the longest handover of a partition that moved (its last record on the first instance to its
  first on the second).

Load average (1 min) at each run's start, from ``os.getloadavg``: the 2 cores are shared. The
broker is ``CHOREO_BOOTSTRAP_SERVERS`` (``bench/saga.py``'s, default ``127.0.0.1:9092``).

Why 150,000 events when one instance takes them in ~4-7 s: a second instance needs ~3 s to get
its partitions (a heartbeat interval for the first member to hear of the join, another for the
cooperative protocol's second round), so with fewer events there is nothing left for it.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import platform
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(BENCH))

import consume  # noqa: E402
import saga as saga_bench  # noqa: E402
from compare import rich_event  # noqa: E402

CHOREO = Path(sys.executable).with_name("choreo")
TIME_LIMIT_S = 120.0
"""A run that has not finished by then is a failure, not a figure."""
POLL_S = 0.05
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def options() -> argparse.Namespace:
    """The command line; sizes are capped so a run stays bounded."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--what", choices=["service", "tracker", "both"], default="both")
    parser.add_argument("--events", type=int, default=150_000)
    parser.add_argument("--sagas", type=int, default=8_000)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument(
        "--handler-ms", type=float, default=0.0, help="service handler blocks this long per record"
    )
    parser.add_argument("--rounds", type=int, default=2, help="each round runs 1, then 2")
    args = parser.parse_args()
    args.bootstrap = saga_bench.BOOTSTRAP  # its fill, responder and clean-up use it too
    args.events = min(args.events, 500_000)
    args.sagas = min(args.sagas, 50_000)
    return args


@dataclass
class Run:
    """One run's figures (see the module's docstring)."""

    what: str
    instances: int
    load: float
    records: int = 0
    steady: float = 0.0
    both: float = 0.0
    cpu_us: float = 0.0
    startup_cpu_s: float = 0.0
    split: list[str] = field(default_factory=list)
    pause_ms: float = 0.0
    handover_ms: float = 0.0


class Child:
    """One ``choreo`` process held at its gate until ``let_in``."""

    def __init__(self, command: list[str], env: dict[str, str], workdir: Path, index: int) -> None:
        self.gate = workdir / f"gate-{index}"
        self.out = workdir / f"out-{index}.json"
        self.log = (workdir / f"log-{index}.txt").open("w")
        env = {**env, "CHOREO_SCALE_GATE": str(self.gate), "CHOREO_SCALE_OUT": str(self.out)}
        self.proc = subprocess.Popen(
            [str(CHOREO), *command], env=env, cwd=ROOT, stdout=self.log, stderr=subprocess.STDOUT
        )
        self.let_in_at = 0.0
        self.cpu_at_gate = 0.0
        self.meter: dict[str, Any] = {}
        """What the service's meter wrote at exit (read before the work directory goes)."""

    def let_in(self) -> None:
        self.cpu_at_gate = self.cpu()
        self.let_in_at = time.time()
        self.gate.touch()

    def started(self) -> bool:
        """The service's first record is handled (its meter leaves a mark)."""
        return self.out.with_suffix(".first").exists()

    def cpu(self) -> float:
        """User + system CPU seconds so far, from ``/proc`` (fields 14 and 15 of ``stat``)."""
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS

    def check(self) -> None:
        if self.proc.poll() is not None:
            tail = Path(self.log.name).read_text().strip().splitlines()[-5:]
            raise RuntimeError(f"instance exited {self.proc.returncode}: {' | '.join(tail)}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()
        if self.out.exists():
            self.meter = json.loads(self.out.read_text())


@contextmanager
def instances(count: int, command: list[str], env: dict[str, str]) -> Iterator[list[Child]]:
    """``count`` children of ``command`` at their gates; all stopped (SIGTERM) on the way out."""
    with tempfile.TemporaryDirectory(prefix="choreo-bench-scale-") as workdir:
        children: list[Child] = []
        try:
            for index in range(count):
                env_i = {**env, "CHOREO_INSTANCE_ID": f"scale-{index}"}
                children.append(Child(command, env_i, Path(workdir), index))
            yield children
        finally:
            for child in children:
                child.stop()


def child_env(bootstrap: str, schemas_dir: Path, **extra: str) -> dict[str, str]:
    """The children's settings: the bench's broker and catalog, tracing off (it is not what is
    measured here, and Jaeger is shared)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    env.update(
        CHOREO_BOOTSTRAP_SERVERS=bootstrap,
        CHOREO_SCHEMAS_DIR=str(schemas_dir),
        CHOREO_TRANSPORT="confluent",
        CHOREO_LOG_FORMAT="text",
        **extra,
    )
    return env


def wait_until(done: Callable[[], bool], children: Sequence[Child], what: str) -> None:
    """Poll ``done``; a child that dies or a run past ``TIME_LIMIT_S`` ends the run."""
    deadline = time.monotonic() + TIME_LIMIT_S
    while not done():
        for child in children:
            child.check()
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what}: not done within {TIME_LIMIT_S:.0f} s")
        time.sleep(POLL_S)


def let_in(children: Sequence[Child], first_seen: Callable[[], bool]) -> None:
    """The first instance joins now; the second once the first has handled a record."""
    children[0].let_in()
    if len(children) > 1:
        wait_until(first_seen, children, "the first instance's first record")
        children[1].let_in()


def gaps(
    timeline: Sequence[tuple[float, int]], joined: float, moved: set[int]
) -> tuple[float, float, float]:
    """From ``(time, partition)`` sorted by time: the longest stretch after ``joined`` in which no
    instance handled anything (ms), the longest a ``moved`` partition went without a record
    after ``joined`` (its handover to the second instance, ms), and when the first moved
    partition resumed after its handover (the time from which both instances run)."""
    after = [(t, p) for t, p in timeline if t >= joined]
    pause = max((b[0] - a[0] for a, b in itertools.pairwise(after)), default=0.0)
    last: dict[int, float] = {}
    longest: dict[int, tuple[float, float]] = {}
    for t, partition in after:
        gap = t - last.get(partition, t)
        if partition in moved and gap > longest.get(partition, (0.0, 0.0))[0]:
            longest[partition] = (gap, t)
        last[partition] = t
    handover = max((gap for gap, _ in longest.values()), default=0.0)
    resumed = min((end for _, end in longest.values()), default=joined)
    return pause * 1000, handover * 1000, resumed


def rate(times: Sequence[float], records: int, since: float) -> float:
    """Records per second from ``since`` to the last time, ``records`` spread as ``times`` are
    (a tracker decides more events than it writes states when it coalesces writes)."""
    tail = [t for t in times if t >= since]
    if len(tail) < 2 or tail[-1] == tail[0]:
        return 0.0
    return (records * (len(tail) - 1) / len(times)) / (max(tail) - min(tail))


# -- service instances --------------------------------------------------------------------------


def group_caught_up(bootstrap: str, group: str, topic: str, partitions: int) -> Callable[[], bool]:
    """Whether ``group`` has committed every partition's end offset (choreo commits each
    second, so this lags the last record by about that: the figures come from the meters)."""
    from confluent_kafka import Consumer, TopicPartition

    reader = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    wanted = [TopicPartition(topic, p) for p in range(partitions)]
    ends = [reader.get_watermark_offsets(tp, timeout=10)[1] for tp in wanted]

    def done() -> bool:
        committed = reader.committed(wanted, timeout=10)
        return all(tp.offset >= end for tp, end in zip(committed, ends, strict=True))

    return done


def run_service(args: argparse.Namespace, schemas_dir: Path, count: int) -> Run:
    group = f"bench-scale-{uuid.uuid4().hex[:8]}"
    run = Run("service", count, os.getloadavg()[0])
    env = child_env(
        args.bootstrap,
        schemas_dir,
        CHOREO_GROUP_ID=group,
        CHOREO_SCALE_HANDLER_MS=str(args.handler_ms),
    )
    with instances(count, ["run", "bench.scale_targets:service"], env) as children:
        done = group_caught_up(args.bootstrap, group, args.topic, args.partitions)
        let_in(children, children[0].started)
        wait_until(done, children, f"group {group} on {args.topic}")
    meters = [child.meter for child in children]
    timeline = sorted(
        (t, p) for m in meters for t, p in zip(m["times"], m["partitions"], strict=True)
    )
    times = [t for t, _ in timeline]
    run.records = len(times)
    if run.records < args.events:  # the group committed them all: a meter did not write
        raise RuntimeError(f"group {group}: the meters saw {run.records:,} of {args.events:,}")
    run.steady = rate(times, run.records, times[0])
    run.cpu_us = sum(m["last_cpu"] - m["first_cpu"] for m in meters) * 1e6 / run.records
    held = [Counter(m["partitions"]) for m in meters]
    moved = set(held[0]) & set(held[-1]) if count > 1 else set()
    ended = [set(held[0]) - set(held[-1]), set(held[-1])] if count > 1 else [set(held[0])]
    run.split = [f"{sorted(p)} ({h.total():,})" for p, h in zip(ended, held, strict=True)]
    if moved:
        run.pause_ms, run.handover_ms, resumed = gaps(timeline, children[1].let_in_at, moved)
        run.both = rate(times, run.records, resumed)
    return run


# -- saga tracker instances ---------------------------------------------------------------------


class Changelog:
    """Reads a tracker's changelog (committed records only) and keeps, per saga, whether its
    latest state is terminal, and the time and partition of every state written."""

    def __init__(self, bootstrap: str, topic: str, partitions: int) -> None:
        from confluent_kafka import Consumer, TopicPartition

        from choreo._saga.state import TERMINAL

        self.terminal_names = {status.value.encode() for status in TERMINAL}
        self.consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": f"bench-scale-reader-{uuid.uuid4().hex[:8]}",
                "isolation.level": "read_committed",
                "enable.auto.commit": False,
            }
        )
        self.consumer.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
        self.terminal: dict[bytes, bool] = {}
        self.timeline: list[tuple[float, int]] = []

    def read(self) -> None:
        for message in self.consumer.consume(1000, timeout=POLL_S):
            key, value, partition = message.key(), message.value(), message.partition()
            if message.error() is not None or key is None or value is None or partition is None:
                continue  # a tombstone (none here: no saga outlives its retention) or an error
            self.timeline.append((message.timestamp()[1] / 1000, partition))
            self.terminal[key] = self.is_terminal(value)

    def is_terminal(self, data: bytes) -> bool:
        """By the stored status, read from the JSON without parsing it where it is JSON
        (``bench/saga.py``'s pattern), else by the tracker's own parse."""
        found = saga_bench.SAGA_STATUS.search(data)
        if found is not None:
            return found[1] in self.terminal_names
        from choreo._saga.state import SagaState

        return SagaState.from_bytes(data).status.value.encode() in self.terminal_names

    def finished(self) -> int:
        return sum(self.terminal.values())

    def close(self) -> None:
        self.consumer.close()


def widen(schemas_dir: Path, partitions: int) -> None:
    """Every topic of ``bench/saga.py``'s catalog copy gets ``partitions`` partitions."""
    catalog = schemas_dir / "catalog.toml"
    text = re.sub(r"partitions = \d+", f"partitions = {partitions}", catalog.read_text())
    catalog.write_text(text)


def owners(bootstrap: str, group: str) -> dict[str, list[int]]:
    """Each member's client id and the changelog-aligned partitions it holds (any input)."""
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": bootstrap})
    description = admin.describe_consumer_groups([group])[group].result(30)
    return {
        member.client_id: sorted({tp.partition for tp in member.assignment.topic_partitions})
        for member in description.members
    }


def run_tracker(args: argparse.Namespace, count: int) -> Run:
    from choreo._config import KafkaConfig
    from choreo._transport.confluent import ConfluentTransport

    suffix = f"scale-{uuid.uuid4().hex[:6]}"
    name = f"bench-{suffix}"
    schemas_dir = saga_bench.schemas(suffix)
    widen(schemas_dir, args.partitions)
    plan = saga_bench.new_tracker(name, schemas_dir)  # for its topology and catalog; not run
    topics = plan.topology.topic_configs(plan.catalog)
    asyncio.run(
        ConfluentTransport(KafkaConfig(bootstrap_servers=args.bootstrap)).ensure_topics(topics)
    )
    events = saga_bench.fill(plan.catalog, args.sagas, suffix) + args.sagas // 4
    responder = subprocess.Popen(
        [sys.executable, str(BENCH / "saga.py"), "respond", str(schemas_dir), plan.group_id]
    )
    changelog = Changelog(args.bootstrap, plan.topology.changelog, args.partitions)
    run = Run("tracker", count, os.getloadavg()[0])
    sagas: int = args.sagas
    env = child_env(args.bootstrap, schemas_dir, CHOREO_SCALE_SAGA=name)
    try:
        target = ["saga", "run", "bench.scale_targets:order_saga"]
        with instances(count, target, env) as children:

            def first_decided() -> bool:
                changelog.read()
                return bool(changelog.timeline)

            let_in(children, first_decided)
            if count == 1:
                wait_until(first_decided, children, "the tracker's first decision")
            run.startup_cpu_s = children[0].cpu() - children[0].cpu_at_gate

            def all_terminal() -> bool:
                changelog.read()
                return changelog.finished() >= sagas

            wait_until(all_terminal, children, f"{args.sagas:,} sagas of {name}")
            cpu = sum(child.cpu() - child.cpu_at_gate for child in children)
            held = owners(args.bootstrap, plan.group_id)
            clients = [f"{plan.group_id}-scale-{i}" for i in range(count)]
            run.split = [f"{held.get(client, [])}" for client in clients]
    finally:
        changelog.close()
        responder.terminate()
        responder.wait(10)
        saga_bench.delete_topics([t.name for t in topics])
    timeline = sorted(changelog.timeline)
    times = [t for t, _ in timeline]
    run.records = events
    run.steady = rate(times, events, times[0])
    run.cpu_us = cpu * 1e6 / events
    if count > 1:
        moved = set(held.get(clients[1], []))
        run.pause_ms, run.handover_ms, resumed = gaps(timeline, children[1].let_in_at, moved)
        run.both = rate(times, events, resumed)
    return run


# -- the report ---------------------------------------------------------------------------------


def report(args: argparse.Namespace, runs: list[Run]) -> str:
    lines = [
        f"# scale-out benchmark, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        "",
        f"1 and 2 instances, same group, separate processes, alternated; {args.partitions} "
        f"partitions; service: {args.events:,} OrderPlaced events, `choreo run`, handler "
        f"{f'blocking {args.handler_ms} ms' if args.handler_ms else 'no-op'}; tracker: "
        f"{args.sagas:,} sagas, `choreo saga run`, exactly once; {platform.machine()}, "
        f"{os.cpu_count()} cores, Python {platform.python_version()}; load = 1-minute load "
        "average at each run's start.",
        "",
        "| what | instances | records | steady msgs/s | both msgs/s | CPU us / record "
        "| partitions (records) per instance | pause ms | handover ms | load |",
        "|---|---:|---:|---:|---:|---:|---|---:|---:|---:|",
    ]
    for r in runs:
        startup = f" (start-up {r.startup_cpu_s:.2f} s)" if r.what == "tracker" else ""
        lines.append(
            f"| {r.what} | {r.instances} | {r.records:,} | {r.steady:,.0f} | "
            f"{r.both:,.0f} | {r.cpu_us:.1f}{startup} | {'; '.join(r.split)} | "
            f"{r.pause_ms:,.0f} | {r.handover_ms:,.0f} | {r.load:.1f} |"
        )
    lines += ["", "Medians, 2 instances over 1:", ""]
    for what in sorted({r.what for r in runs}):
        one = [r for r in runs if r.what == what and r.instances == 1]
        two = [r for r in runs if r.what == what and r.instances == 2]
        if one and two:
            lines.append(f"- {what}: {ratios(one, two)}")
    return "\n".join(lines) + "\n"


def ratios(one: list[Run], two: list[Run]) -> str:
    """Two instances' medians against one instance's: steady rate, rate once both ran, CPU."""
    steady1, steady2 = (statistics.median(r.steady for r in runs) for runs in (one, two))
    cpu1, cpu2 = (statistics.median(r.cpu_us for r in runs) for runs in (one, two))
    both = statistics.median(r.both for r in two)
    return (
        f"steady {steady1:,.0f} -> {steady2:,.0f} msgs/s (**{steady2 / steady1:.2f}x**; "
        f"once both ran {both:,.0f}, {both / steady1:.2f}x); CPU per record {cpu1:.1f} -> "
        f"{cpu2:.1f} us ({cpu2 / cpu1:.2f}x)"
    )


def main() -> None:
    args = options()
    parts: list[tuple[str, Callable[[int], Run]]] = []
    if args.what in ("service", "both"):
        consume.PARTITIONS = args.partitions  # fill and bench_schemas read it
        args.topic = f"bench-scale-{uuid.uuid4().hex[:8]}"
        print(f"filling {args.topic} with {args.events:,} events ...", flush=True)
        consume.fill(args.bootstrap, args.topic, args.events, rich_event)
        schemas_dir = consume.bench_schemas(args.topic)
        parts.append(("service", lambda count: run_service(args, schemas_dir, count)))
    if args.what in ("tracker", "both"):
        parts.append(("tracker", lambda count: run_tracker(args, count)))
    runs: list[Run] = []
    try:
        for what, measure in parts:
            for round_no, count in itertools.product(range(1, args.rounds + 1), (1, 2)):
                runs.append(measure(count))
                steady = runs[-1].steady
                print(f"round {round_no} {what} x{count}: {steady:,.0f} msgs/s", flush=True)
    finally:
        if "topic" in args:  # and the dead-letter topic `choreo run` made for it
            from choreo._runtime.dead_letters import PREFIX

            service = "bench-scale"  # bench/scale_targets.py's Service
            saga_bench.delete_topics([args.topic, f"{PREFIX}{service}.{args.topic}"])
    table = report(args, runs)
    out = BENCH / "results" / f"scale-{datetime.now(UTC):%Y%m%dT%H%M%S}.md"
    out.write_text(table)
    print(table + f"\nwritten to {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
