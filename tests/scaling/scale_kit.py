"""A steady load, instances of one service as processes, and what their ledgers say.

The analysis works from handling times alone: per partition, the longest pause and whether
the partition changed owner across it. A partition that keeps its owner through a
membership change should pause no more than a routine poll; one that moves pauses until its
new owner has it (the failover time).
"""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from builders import placed
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

from choreo import _headers
from choreo._schemas import Catalog, Codec
from services.events import OrderPlaced

ROOT = Path(__file__).resolve().parents[2]
KEYS = 30


def create_topic(kafka: str, topic: str, partitions: int) -> None:
    admin = AdminClient({"bootstrap.servers": kafka})
    for future in admin.create_topics([NewTopic(topic, partitions, 1)]).values():
        future.result(30)


class Load(threading.Thread):
    """OrderPlaced at ``rate`` per second from a plain producer, keyed over ``KEYS`` keys;
    order ids ``k<key>-<seq>`` carry each key's sequence, for the order check."""

    def __init__(self, kafka: str, catalog: Catalog, rate: float) -> None:
        super().__init__(daemon=True)
        self.topic = catalog.topic_of(OrderPlaced.event_type).name
        self._codec = Codec(catalog)
        # Idempotent, or a batch retried after the fresh topic's first produce errors lands
        # behind the next one, and the order check blames the consumers for the producer's
        # reordering (a CI rehearsal: k20-1 at offset 4 of partition 4, k20-0 at offset 10).
        self._producer = Producer(
            {"bootstrap.servers": kafka, "linger.ms": 5, "enable.idempotence": True}
        )
        self._interval_s = 1 / rate
        self._halt = threading.Event()
        self.sent: list[str] = []

    def run(self) -> None:
        template = placed("x")
        event_type = OrderPlaced.event_type.encode()
        due = time.monotonic()
        while not self._halt.is_set():
            n = len(self.sent)
            order_id = f"k{n % KEYS}-{n // KEYS}"
            event = template.model_copy(update={"order_id": order_id})
            headers = _headers.event_headers(event_type, b"load", f"e-{n}", order_id, None)
            self._producer.produce(
                self.topic, self._codec.encode(event), f"k{n % KEYS}".encode(), headers=headers
            )
            self._producer.poll(0)
            self.sent.append(order_id)
            due += self._interval_s
            self._halt.wait(max(0.0, due - time.monotonic()))

    def finish(self) -> None:
        """Stop sending and deliver what was sent (again: nothing more to do)."""
        self._halt.set()
        if self.is_alive():
            self.join()
        assert self._producer.flush(30) == 0


@dataclass
class Instances:
    """``choreo run`` processes of one service, started, SIGTERMed and killed by slot."""

    kafka: str
    schemas: Path
    ledgers: Path
    env: dict[str, str]
    static: bool = False
    """Give each slot a stable ``CHOREO_INSTANCE_ID`` and static membership."""
    group: str = field(default_factory=lambda: f"scale-{uuid.uuid4().hex[:8]}")
    """A group of this run's own: runs on one broker never join each other's group."""
    live: dict[int, subprocess.Popen[str]] = field(default_factory=dict)
    killed: set[int] = field(default_factory=set)
    """Pids ended with kill -9 (their last records may be handled again)."""
    all: list[subprocess.Popen[str]] = field(default_factory=list)

    def start(self, slot: int) -> None:
        identity = {"CHOREO_INSTANCE_ID": f"slot-{slot}", "CHOREO_STATIC_MEMBERSHIP": "true"}
        log = (self.ledgers / f"slot-{slot}-{len(self.all)}.log").open("w")
        process = subprocess.Popen(
            [sys.executable, "-m", "choreo._cli.main", "run", "scale_service"],
            cwd=ROOT,
            env={
                **os.environ,
                "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'tests' / 'scaling'}",
                "CHOREO_BOOTSTRAP_SERVERS": self.kafka,
                "CHOREO_SCHEMAS_DIR": str(self.schemas),
                "LEDGER_DIR": str(self.ledgers),
                "CHOREO_GROUP_ID": self.group,
                **(identity if self.static else {}),
                **self.env,
            },
            stdout=log,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.live[slot] = process
        self.all.append(process)

    def sigterm(self, slot: int) -> None:
        process = self.live.pop(slot)
        process.send_signal(signal.SIGTERM)

    def kill(self, slot: int) -> None:
        process = self.live.pop(slot)
        process.kill()
        process.wait()
        self.killed.add(process.pid)

    def stop_all(self) -> None:
        for process in self.all:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.all:
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def logs(self) -> str:
        logs = sorted(self.ledgers.glob("*.log"))
        return "\n".join(f"--- {log.name}\n{log.read_text()[-2000:]}" for log in logs)


class Handling:
    __slots__ = ("at", "offset", "order_id", "partition", "pid")

    def __init__(self, at: float, partition: int, offset: int, order_id: str, pid: int) -> None:
        self.at, self.partition, self.offset = at, partition, offset
        self.order_id, self.pid = order_id, pid


def read_ledgers(ledgers: Path) -> list[Handling]:
    """Every handling of every process, in time order."""
    found = []
    for ledger in ledgers.glob("*.txt"):
        pid = int(ledger.stem)
        for line in ledger.read_text().splitlines():
            parts = line.split()
            if len(parts) == 4:  # a line cut by kill -9 is not a handling
                at, partition, offset, order_id = parts
                found.append(Handling(float(at), int(partition), int(offset), order_id, pid))
    return sorted(found, key=lambda h: h.at)


@dataclass(frozen=True)
class Pause:
    partition: int
    start: float
    end: float
    moved: bool
    """The partition's owner before the pause is not its owner after it."""

    @property
    def seconds(self) -> float:
        return self.end - self.start


def pauses(handlings: list[Handling], since: float, until: float) -> list[Pause]:
    """Each gap between consecutive handlings of a partition within ``[since, until]``."""
    by_partition: dict[int, list[Handling]] = defaultdict(list)
    for h in handlings:
        if since <= h.at <= until:
            by_partition[h.partition].append(h)
    found = []
    for partition, seen in by_partition.items():
        for before, after in itertools.pairwise(seen):
            found.append(Pause(partition, before.at, after.at, before.pid != after.pid))
    return found


def order_violations(handlings: list[Handling]) -> list[str]:
    """Per key, records first handled out of sequence, or one process handling a key backwards."""
    problems = []
    first_seen: dict[str, list[int]] = defaultdict(list)
    per_process: dict[tuple[int, str], int] = {}
    seen: set[str] = set()
    for h in handlings:
        key, seq = h.order_id.split("-")
        number = int(seq)
        last = per_process.get((h.pid, key), -1)
        if number <= last:
            problems.append(f"pid {h.pid} handled {h.order_id} after {key}-{last}")
        per_process[(h.pid, key)] = number
        if h.order_id not in seen:
            seen.add(h.order_id)
            first_seen[key].append(number)
    for key, numbers in first_seen.items():
        if numbers != sorted(numbers):
            problems.append(f"key {key}: first handled in the order {numbers[:20]}...")
    return problems


def describe(pause_list: list[Pause], at: float, window_s: float) -> tuple[float, float]:
    """The longest pause of moved and of unmoved partitions spanning ``[at, at + window_s]``."""
    near = [p for p in pause_list if p.end >= at and p.start <= at + window_s]
    moved = max((p.seconds for p in near if p.moved), default=0.0)
    kept = max((p.seconds for p in near if not p.moved), default=0.0)
    return moved, kept
