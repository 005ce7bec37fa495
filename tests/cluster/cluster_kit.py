"""What the cluster tests share: a seeded relay set-up, a paced producer of orders, partition
leadership, ISR waits, and a read_committed reader of the relays' outputs."""

from __future__ import annotations

import asyncio
import os
import random
import sqlite3
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from builders import placed
from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    Message,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient

from choreo import KafkaConfig, _headers
from choreo._schemas import Catalog, Codec
from choreo._transport.confluent import ConfluentTransport
from services.events import OrderPlaced, StockReservationFailed

INTERNAL_TOPICS = ("__consumer_offsets", "__transaction_state")
RELAY = "relay-once"
"""``relay_once.py``'s service (and ``ce_source``): at least once, effects in its store."""
EXACT = "eos"
"""``tests/runtime/eos_service.py``'s service: exactly once, a ledger line per handling."""


def seeded() -> int:
    """The run's seed, printed so a failure can be replayed with ``CHOREO_TEST_SEED``."""
    seed = int(os.environ.get("CHOREO_TEST_SEED", time.time_ns() % 100_000))
    print(f"seed {seed} (CHOREO_TEST_SEED={seed} repeats this run's keys and pacing)")
    return seed


@dataclass
class Relaying:
    """A seeded run on the cluster: the catalog's topics created as choreo creates them (its
    settings, the cluster's replication), and the relays started as ``choreo run`` would."""

    kafka: str
    schemas: Path
    tmp: Path
    run_service: Callable[..., subprocess.Popen[str]]
    seed: int = field(default_factory=seeded)

    def __post_init__(self) -> None:
        self.catalog = Catalog.load(self.schemas)
        self.db = self.tmp / "once.db"
        self.ledger = self.tmp / "exact-ledger.txt"
        self.outputs = self.catalog.topic_of(StockReservationFailed.event_type).name
        transport = ConfluentTransport(KafkaConfig(bootstrap_servers=self.kafka))
        configs = [spec.topic_config() for spec in self.catalog.topics.values()]
        asyncio.run(transport.ensure_topics(configs))

    def start_once(self, **env: str) -> subprocess.Popen[str]:
        """The at-least-once relay (``relay_once.py``), its store in ``db``."""
        return self.run_service(
            "tests.cluster.relay_once", self.schemas, RELAY_DB=str(self.db), **env
        )

    def start_exact(self, config: Path | None = None) -> subprocess.Popen[str]:
        """The exactly-once relay, committing often so a kill finds a transaction open."""
        return self.run_service(
            "eos_service",
            self.schemas,
            config,
            LEDGER_FILE=str(self.ledger),
            CHOREO_EXACTLY_ONCE="true",
            CHOREO_COMMIT_INTERVAL_S="0.2",
        )

    def handled(self) -> int:
        """How many times the exactly-once relay handled an order (redone ones included)."""
        return len(self.ledger.read_text().splitlines()) if self.ledger.exists() else 0

    def effects(self) -> list[tuple[str, float]]:
        """(order id, when handled) per effect row of the at-least-once relay."""
        if not self.db.exists():
            return []
        with sqlite3.connect(self.db) as connection:
            try:
                return list(connection.execute("SELECT order_id, at FROM effects"))
            except sqlite3.OperationalError:  # the service has not made its table yet
                return []


@dataclass
class OrderFeed:
    """Produces ``OrderPlaced`` ``o-<i>`` at about ``rate`` a second (seeded jitter), acks=all
    and idempotent as a careful producer outside choreo would, until ``stop`` or ``limit``."""

    kafka: str
    catalog: Catalog
    seed: int
    rate: float = 40.0
    limit: int | None = None
    first: int = 0
    timeout_ms: int = 300_000
    """``message.timeout.ms``: how long a record may wait for its acks before it fails."""
    """The first ``i``: a second feed on the same topic starts where the first stopped."""
    sent_at: dict[int, float] = field(default_factory=dict)
    partition_of: dict[int, int] = field(default_factory=dict)
    errors: Counter[str] = field(default_factory=Counter)
    resent: list[int] = field(default_factory=list)
    """Orders ``settle`` found in no partition although the producer reported them delivered."""
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    @property
    def topic(self) -> str:
        return self.catalog.topic_of(OrderPlaced.event_type).name

    def __post_init__(self) -> None:
        self._codec = Codec(self.catalog)
        self._template = placed("x")

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="order-feed", daemon=True)
        self._thread.start()

    def stop(self) -> int:
        """Stop sending, wait for every delivery report; returns how many were sent."""
        self._stop.set()
        return self.finish()

    def finish(self) -> int:
        """Wait until ``limit`` records are sent and reported; returns how many were sent."""
        assert self._thread is not None
        self._thread.join(timeout=self.timeout_ms / 1000 + 30)
        return len(self.sent_at)

    def settle(self) -> Counter[int]:
        """After ``stop`` or ``finish``: how many records of each order the topic holds
        (read_committed), every order at least once; the relays are judged on that.

        The producer's word is not enough: its idempotence may write an order twice (a
        retry after an epoch bump) or, rarely, report one delivered that no replica holds
        (seed 1806: ``o-4``, the first sequence number of its partition, never appended;
        the log started at sequence 1). Such an order is sent again, once, and kept in
        ``resent`` for the report; one still missing after that fails the test here.
        """
        copies = topic_copies(self.kafka, self.topic)
        self.resent = [i for i in sorted(self.sent_at) if f"o-{i}".encode() not in copies]
        if self.resent:
            producer = self._producer()
            for i in self.resent:
                self._produce(producer, i)
            producer.flush(self.timeout_ms / 1000 + 20)
            copies = topic_copies(self.kafka, self.topic)
        orders = Counter({int(key[2:]): n for key, n in copies.items()})
        missing = sorted(set(self.sent_at) - set(orders))
        assert not missing, f"{self.topic}: orders {missing} in no partition, even sent again"
        return orders

    def _run(self) -> None:
        rng = random.Random(self.seed)
        producer = self._producer()
        i = self.first
        while not self._stop.is_set() and (self.limit is None or i < self.first + self.limit):
            self.sent_at[i] = time.time()
            self._produce(producer, i)
            producer.poll(0)
            i += 1
            time.sleep(rng.uniform(0.5, 1.5) / self.rate)
        producer.flush(self.timeout_ms / 1000 + 20)

    def _producer(self) -> Producer:
        return Producer(
            {
                "bootstrap.servers": self.kafka,
                "acks": "all",
                "enable.idempotence": True,
                "linger.ms": 5,
                "message.timeout.ms": self.timeout_ms,
            }
        )

    def _produce(self, producer: Producer, i: int) -> None:
        """Order ``o-<i>``, its event id ``in-<seed>-<i>`` (the same when it is sent again)."""
        event = self._template.model_copy(update={"order_id": f"o-{i}"})
        event_id = f"in-{self.seed}-{i}"
        headers = _headers.event_headers(
            OrderPlaced.event_type.encode(), b"test", event_id, event_id, None
        )
        producer.produce(
            self.topic,
            key=event.order_id.encode(),
            value=self._codec.encode(event),
            headers=headers,
            on_delivery=self._delivered(i),
        )

    def _delivered(self, i: int) -> Callable[[KafkaError | None, Message], None]:
        def report(error: KafkaError | None, message: Message) -> None:
            if error is None:
                self.partition_of[i] = message.partition()
            else:
                self.errors[error.name()] += 1

        return report


def topic_copies(kafka: str, topic: str, timeout_s: float = 120) -> Counter[bytes]:
    """Per key, how many records ``topic`` holds: read_committed from the start of every
    partition to its end (the producers must have stopped)."""
    consumer = Consumer(
        {
            "bootstrap.servers": kafka,
            "group.id": f"inputs-{time.time_ns()}",
            "isolation.level": "read_committed",
            "enable.partition.eof": True,
            "enable.auto.commit": False,
        }
    )
    partitions = set(consumer.list_topics(topic, timeout=10).topics[topic].partitions)
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
    copies: Counter[bytes] = Counter()
    deadline = time.monotonic() + timeout_s
    while partitions:
        assert time.monotonic() < deadline, f"{topic}{sorted(partitions)}: not read to the end"
        for message in consumer.consume(1000, 0.5):
            error = message.error()
            if error is None:
                copies[message.key()] += 1
            elif error.code() == KafkaError._PARTITION_EOF:
                partitions.discard(message.partition())
            else:
                raise AssertionError(f"{topic}[{message.partition()}]: {error.str()}")
    consumer.close()
    return copies


def leaders(kafka: str, topic: str) -> dict[int, int]:
    """Partition -> id of the broker leading it (-1: none)."""
    metadata = AdminClient({"bootstrap.servers": kafka}).list_topics(topic, timeout=10)
    return {p: info.leader for p, info in metadata.topics[topic].partitions.items()}


def coordinator(kafka: str, group: str) -> int:
    """Id of the broker coordinating ``group`` (the one leading its ``__consumer_offsets``)."""
    admin = AdminClient({"bootstrap.servers": kafka})
    [future] = admin.describe_consumer_groups([group], request_timeout=10).values()
    return int(future.result(timeout=15).coordinator.id)


def wait_fully_replicated(kafka: str, topics: list[str], timeout_s: float = 120) -> None:
    """Until every partition of ``topics`` (and the internal ones) has all 3 replicas in sync."""
    admin = AdminClient({"bootstrap.servers": kafka})
    wanted = [*topics, *INTERNAL_TOPICS]
    lagging: list[str] = []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        metadata = admin.list_topics(timeout=10)
        lagging = [
            f"{name}[{p}] isr={info.isrs}"
            for name in wanted
            if name in metadata.topics
            for p, info in metadata.topics[name].partitions.items()
            if len(info.isrs) < 3 or info.leader < 0
        ]
        if not lagging:
            return
        time.sleep(0.5)
    raise AssertionError(f"not fully replicated after {timeout_s:.0f}s: {', '.join(lagging)}")


def outputs_by_source(
    kafka: str, topic: str, expected: int, sources: tuple[str, ...], timeout_s: float = 120
) -> dict[str, dict[str, list[float]]]:
    """Per ``ce_source``, per causation id: the timestamps (s) of ``topic``'s records, one per
    copy, read_committed, until each source has ``expected`` distinct causation ids and 3 s
    more passed (late duplicates)."""
    consumer = Consumer(
        {
            "bootstrap.servers": kafka,
            "group.id": f"reader-{time.time_ns()}",
            "auto.offset.reset": "earliest",
            "isolation.level": "read_committed",
        }
    )
    consumer.subscribe([topic])
    seen: dict[str, dict[str, list[float]]] = {source: {} for source in sources}
    deadline = time.monotonic() + timeout_s
    quiet_until = None
    while time.monotonic() < deadline:
        for message in consumer.consume(1000, 0.5):
            if message.error() is None:
                headers = dict(message.headers() or [])
                copies = seen.setdefault(headers[_headers.SOURCE].decode(), {})
                cause = headers[_headers.CAUSATION].decode()
                copies.setdefault(cause, []).append(message.timestamp()[1] / 1000)
        if all(len(seen[s]) >= expected for s in sources):
            quiet_until = quiet_until or time.monotonic() + 3
            if time.monotonic() > quiet_until:
                break
    consumer.close()
    return seen


def beyond_inputs(seen: dict[str, list[float]], inputs: Counter[int]) -> dict[str, int]:
    """Causation ids ``in-<seed>-<i>`` with more output copies than order ``i`` has input
    records: an exactly-once relay handles each input record once, a duplicate input too."""
    return {
        cause: len(copies)
        for cause, copies in seen.items()
        if len(copies) > inputs[int(cause.rsplit("-", 1)[1])]
    }


def wait_until(
    condition: Callable[[], bool],
    timeout_s: float,
    what: str,
    lacking: Callable[[], object] | None = None,
) -> None:
    """Poll ``condition``; at the timeout the failure says what ``lacking`` returns then
    (e.g. which orders), so a run that cannot be repeated still names its culprit."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() >= deadline:
            detail = "" if lacking is None else f": {lacking()}"
            raise AssertionError(f"timed out after {timeout_s:.0f}s waiting for {what}{detail}")
        time.sleep(0.2)
