"""Saga tracker benchmarks: events per second with exactly-once, and memory per open saga.

Run from the project root with the stack up (``make up``); loopback only, bounded::

    .venv/bin/python bench/saga.py throughput --sagas 20000
    .venv/bin/python bench/saga.py throughput --sagas 20000 --contenders choreo,naive --rounds 2
    .venv/bin/python bench/saga.py memory --open 100000
    .venv/bin/python bench/saga.py path --sagas 2000 [--callgrind] [--contender naive]

``throughput`` fills fresh topics with the events of N sagas (3 in 4 complete: OrderPlaced,
StockReserved, PaymentAuthorized, OrderCompleted; 1 in 4 fail at the stock step: OrderPlaced,
StockReservationFailed, then the tracker emits CancelOrder and a responder process answers
OrderCancelled), then runs the tracker in this process (every batch one Kafka transaction:
changelog writes, compensations, offsets) and times it from its partition assignment until
every saga is terminal, and (steady) from the arrival of its first records, without the group
join and first fetch. Events per second counts the saga events the tracker consumed; a second
line gives the time its transaction commits took (the broker's share of a batch: waited out by
the naive tracker, overlapped with the next batch by choreo's, which commits in a thread). CPU
per event is the process's (all threads); "its own thread" is the loop's thread only, which for
choreo no longer includes the produce calls its commit thread makes.
``--contenders choreo,naive`` (or ``--rounds N``) runs each contender in its own process on its
own fresh topics, alternated round by round, and prints choreo's ratio to the hand-written
exactly-once tracker of ``contenders/naive_tracker.py``, the yardstick of issue 17's aim.

``path`` runs the tracker's state path without Kafka (read the state from the store, the
engine, write the JSON, pack it into the store) over N sagas' events, each event its own
read and write (no two in one batch, as in ``throughput``), and prints the CPU per event of
each part; ``--callgrind`` counts instructions per event instead (valgrind, two runs of 40 and
120 sagas, the difference over the extra events: start-up cancels out, load cannot move it).
``--contender naive`` runs the hand-written tracker's same path instead: its saga logic over its
dict of states, and its JSON.

``rebalance`` writes N open sagas to a fresh changelog, has a tracker restore them, then starts
and stops a second instance in its group, ``--rounds`` times each way, and prints the first
instance's restore at each join: keeping the states of the partitions it keeps, or forgetting
them (every rebalance before 2026-12-05), alternated, with the ratio of the medians.

``memory`` writes N open sagas (started, stock reserved, waiting for payment; each its own
random ids, times and trace context, as the tracker makes them) to a fresh changelog topic,
then a fresh process restores them with the tracker's own restore (changelog read, store,
timer heap) and reports the resident memory that added, before and after ``malloc_trim``
(glibc keeps freed memory resident for reuse until asked), per open saga.
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import tomllib
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "saga"))  # the tests' event factories (saga_defs)
sys.path.insert(0, str(ROOT / "bench" / "contenders"))  # naive_tracker

BOOTSTRAP = os.environ.get("CHOREO_BOOTSTRAP_SERVERS", "127.0.0.1:9092")
TIME_LIMIT_S = 600.0
SAGA_STATUS = re.compile(rb'"status":"(\w+)"')
"""A state's first ``status`` is the saga's (its steps' come later): no parse needed."""


def schemas(suffix: str) -> Path:
    """A copy of schemas/ whose topics are renamed ``<topic>.<suffix>``: fresh and empty."""
    target = Path(tempfile.mkdtemp(prefix="choreo-bench-saga-")) / "schemas"
    shutil.copytree(ROOT / "schemas", target)
    topics = tomllib.loads((ROOT / "schemas" / "catalog.toml").read_text())["topics"]
    blocks = [
        f'[topics."{name}.{suffix}"]\nevents = {spec["events"]!r}\nkey = "{spec["key"]}"\n'
        f"partitions = {spec['partitions']}\n".replace("'", '"')
        for name, spec in topics.items()
    ]
    (target / "catalog.toml").write_text("\n".join(blocks))
    return target


def definition(name: str) -> Any:
    """The tests' order saga without approval, with deadlines no run reaches."""
    from dataclasses import replace

    import saga_defs as d

    from choreo.saga import Saga

    slow = {"deadline": None, "compensation_deadline": timedelta(hours=1)}
    return Saga(
        name,
        version=1,
        start=d.OrderPlaced,
        deadline=timedelta(hours=1),
        steps=[replace(step, **slow) for step in (d.order_step, d.stock_step, d.charge_step)],
        completed=[d.OrderCompleted],
        parked=d.SagaFailed,
    )


def script(i: int, saga_id: str) -> list[Any]:
    import saga_defs as d

    if i % 4 == 3:
        return [d.placed(saga_id), d.reservation_failed(saga_id)]
    return [d.placed(saga_id), d.reserved(saga_id), d.authorized(saga_id), d.completed(saga_id)]


def producer() -> Any:
    import confluent_kafka as ck

    return ck.Producer(
        {
            "bootstrap.servers": BOOTSTRAP,
            "linger.ms": 20,
            "queue.buffering.max.messages": 500_000,
            "partitioner": "murmur2_random",
        }
    )


def send(out: Any, topic: str, key: bytes, value: bytes, headers: Any) -> None:
    while True:
        try:
            out.produce(topic, key=key, value=value, headers=headers)
            out.poll(0)
            return
        except BufferError:
            out.poll(0.1)


def fill(catalog: Any, sagas: int, prefix: str) -> int:
    """Every saga's input events (1,000 distinct sagas' encodings, cycled); returns the count."""
    from choreo import _headers
    from choreo._schemas import Codec

    codec = Codec(catalog)
    out = producer()
    count = 0
    for i in range(sagas):
        saga_id = f"{prefix}-{i:07d}"
        for event in script(i, saga_id):
            spec = catalog.topic_of(event.event_type)
            headers = _headers.event_headers(
                event.event_type.encode(), b"bench", str(uuid.uuid4()), saga_id, None
            )
            send(out, spec.name, saga_id.encode(), codec.encode(event), headers)
            count += 1
    out.flush(120)
    return count


def respond(schemas_dir: str, source: str) -> None:
    """The orders service's part: confirm every CancelOrder the tracker emits."""
    import confluent_kafka as ck
    import saga_defs as d

    from choreo import _headers
    from choreo._schemas import Catalog, Codec

    catalog = Catalog.load(Path(schemas_dir))
    codec = Codec(catalog)
    orders = catalog.topic_of("shop.orders.CancelOrder").name
    consumer = ck.Consumer(
        {
            "bootstrap.servers": BOOTSTRAP,
            "group.id": f"bench-responder-{uuid.uuid4().hex[:8]}",
            "isolation.level": "read_committed",
            "auto.offset.reset": "earliest",
        }
    )
    consumer.subscribe([orders])
    out = producer()
    stop_at = time.monotonic() + TIME_LIMIT_S
    while time.monotonic() < stop_at:
        for message in consumer.consume(500, timeout=0.2):
            headers = dict(message.headers() or [])
            if message.error() is not None or headers.get(_headers.SOURCE) != source.encode():
                continue
            saga_id = headers[_headers.CORRELATION].decode()
            reply = d.cancelled(saga_id)
            wire = _headers.event_headers(
                reply.event_type.encode(), b"bench", str(uuid.uuid4()), saga_id, None
            )
            send(out, orders, saga_id.encode(), codec.encode(reply), wire)
        out.poll(0)


def new_tracker(name: str, schemas_dir: Path) -> Any:
    from choreo._config import KafkaConfig, ServiceConfig
    from choreo._schemas import Catalog
    from choreo.saga import SagaTracker

    config = ServiceConfig(kafka=KafkaConfig(bootstrap_servers=BOOTSTRAP), schemas_dir=schemas_dir)
    return SagaTracker(
        [definition(name)], config, catalog=Catalog.load(schemas_dir), instance="bench"
    )


class FirstRecord:
    """A contender's consumer that notes when its first records arrived: the steady rate runs
    from there, without the group join and the first fetch (~0.2 s of a 4 s round), as
    ``compare.py``'s does. Every other call goes straight through."""

    def __init__(self, consumer: Any) -> None:
        self._consumer = consumer
        self.at: float | None = None
        self.cpu = self.own = 0.0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._consumer, name)

    def consume(self, *args: Any, **kwargs: Any) -> Any:
        messages = self._consumer.consume(*args, **kwargs)
        if messages and self.at is None:  # in the loop's thread: its own CPU time too
            self.at, self.cpu, self.own = time.monotonic(), time.process_time(), time.thread_time()
        return messages


class TimedCommits:
    """A tracker's transactional producer that adds up the wall time of its commits (offsets
    and commit): the broker's share of each batch, whatever the tracker's CPU. Every other call
    goes straight through (``produce`` and ``begin_transaction`` bound, no indirection)."""

    def __init__(self, producer: Any) -> None:
        self._producer = producer
        self.produce = producer.produce
        self.begin_transaction = producer.begin_transaction
        self.waited = 0.0
        self.commits = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._producer, name)

    def send_offsets_to_transaction(self, *args: Any) -> None:
        began = time.monotonic()
        try:
            self._producer.send_offsets_to_transaction(*args)
        finally:
            self.waited += time.monotonic() - began

    def commit_transaction(self, *args: Any) -> None:
        began = time.monotonic()
        try:
            self._producer.commit_transaction(*args)
        finally:
            self.waited += time.monotonic() - began
            self.commits += 1


@dataclass
class Contender:
    """One tracker under test, as ``throughput`` drives it."""

    poll_once: Callable[[], None]
    assigned: Callable[[], bool]
    finished: set[Any]
    """The sagas whose terminal state is committed."""
    source: str
    """The ``ce_source`` of its compensations: the responder answers those only."""
    topics: list[str]
    """To delete after the run."""
    close: Callable[[], None]
    serving_gc: bool
    """Tune the collector once assigned, as ``choreo saga run`` does."""
    commits: TimedCommits
    first: FirstRecord


def contender(name: str, suffix: str, schemas_dir: Path) -> Contender:
    """Started (topics created, subscribed) on this run's fresh topics."""
    if name == "choreo":
        tracker = new_tracker(f"bench-{suffix}", schemas_dir)
        finished = count_finished(tracker)
        tracker.start()  # creates the topics
        topics = [c.name for c in tracker.topology.topic_configs(tracker.catalog)]
        held = tracker.store
        tracker._producer = timed = TimedCommits(tracker._producer)
        tracker._consumer = first = FirstRecord(tracker._consumer)
        return Contender(
            tracker.poll_once, lambda: bool(held.partitions), finished, tracker.group_id, topics,
            tracker.close, serving_gc=True, commits=timed, first=first,
        )  # fmt: skip
    from naive_tracker import NaiveTracker

    inputs = {
        topic: f"{topic}.{suffix}" for topic in ("shop.orders", "shop.inventory", "shop.payments")
    }
    naive = NaiveTracker(BOOTSTRAP, f"naive-{suffix}", inputs, f"naive.{suffix}.state")
    naive.start()
    naive.producer = timed = TimedCommits(naive.producer)
    naive.consumer = first = FirstRecord(naive.consumer)
    return Contender(
        naive.poll_once, lambda: bool(naive.states), naive.finished, naive.name,
        [*inputs.values(), naive.changelog], naive.close, serving_gc=False, commits=timed,
        first=first,
    )  # fmt: skip


def throughput(sagas: int, name: str) -> None:
    from choreo._runtime.heap import TRACKER_YOUNG_THRESHOLD, tune_gc_for_serving
    from choreo._schemas import Catalog

    suffix = f"bench-{uuid.uuid4().hex[:6]}"
    schemas_dir = schemas(suffix)
    tracker = contender(name, suffix, schemas_dir)
    began = time.monotonic()
    events = fill(Catalog.load(schemas_dir), sagas, suffix)
    print(f"filled {events:,} events of {sagas:,} sagas in {time.monotonic() - began:.1f}s")
    expected = events + sagas // 4  # plus one OrderCancelled per failed saga
    responder = subprocess.Popen(
        [sys.executable, __file__, "respond", str(schemas_dir), tracker.source]
    )
    finished = tracker.finished
    try:
        while not tracker.assigned():
            tracker.poll_once()
        if tracker.serving_gc:
            tune_gc_for_serving(TRACKER_YOUNG_THRESHOLD)  # as choreo saga run does
        started, cpu, own = time.monotonic(), time.process_time(), time.thread_time()
        commits, waited = tracker.commits.commits, tracker.commits.waited
        while len(finished) < sagas:
            if time.monotonic() - started > TIME_LIMIT_S:
                raise SystemExit(
                    f"only {len(finished):,} of {sagas:,} sagas finished in {TIME_LIMIT_S}s"
                )
            tracker.poll_once()
        ended, cpu_ended, own_ended = time.monotonic(), time.process_time(), time.thread_time()
        elapsed, cpu, own = ended - started, cpu_ended - cpu, own_ended - own
        first = tracker.first.at
        assert first is not None  # sagas finished: records arrived
        steady, steady_cpu = ended - first, cpu_ended - tracker.first.cpu
        steady_own = own_ended - tracker.first.own
        commits = tracker.commits.commits - commits
        waited = tracker.commits.waited - waited
    finally:
        responder.terminate()
        responder.wait(10)
        tracker.close()
        delete_topics(tracker.topics)
    label = "" if name == "choreo" else f"{name} "
    print(
        f"{sagas:,} sagas, {expected:,} saga events in {elapsed:.1f}s: "
        f"{expected / elapsed:,.0f} events/s, {sagas / elapsed:,.0f} sagas/s "
        f"({label}tracker CPU {cpu:.1f}s, {cpu / expected * 1e6:,.0f} us per event, of which its "
        f"own thread {own / expected * 1e6:,.0f} us (the rest: librdkafka's threads, and a "
        "commit thread's); exactly-once: one transaction per batch)"
    )
    print(
        f"transaction commits (offsets + commit): {waited:.1f}s of the {elapsed:.1f}s, "
        f"{commits:,} transactions, {waited / max(commits, 1) * 1e3:.0f} ms each"
    )
    print(
        f"steady, from the first records' arrival to the last saga: {expected / steady:,.0f} "
        f"events/s, {steady_cpu / expected * 1e6:,.0f} us CPU per event, of which its own thread "
        f"{steady_own / expected * 1e6:,.0f} us"
        + (
            " (the first figure counts the records of the poll that joined the group, untimed)"
            if first < started
            else ""
        )
    )


RESULT = re.compile(
    r"in ([\d.]+)s: ([\d,]+) events/s.*?commits \(offsets \+ commit\): ([\d.]+)s"
    r".*?last saga: ([\d,]+) *events/s, ([\d,]+) us CPU per event, of which its own thread "
    r"([\d,]+) us",
    re.DOTALL,
)
FIGURES = (
    "events/s",
    "steady events/s",
    "us CPU per event (steady)",
    "us own thread (steady)",
    "% of the time in commits",
)
"""The CPU figures are the steady ones: the first figure's clocks start after the poll that
joined the group, which for choreo's tracker returns its first batch."""


def compare(sagas: int, names: list[str], rounds: int) -> None:
    """Each contender its own process on fresh topics, alternated round by round; the
    medians and choreo's ratio to each other contender. A round 0 first, not counted: a
    broker started minutes before still compiles (its JIT threads took 2.06, 1.85 and 0.61 s
    of CPU in the second to fourth runs after ``make up``, 0.5-0.85 s a run after that, on
    the two cores the contenders use; 2026-12-05)."""
    runs: dict[str, list[list[float]]] = {name: [] for name in names}
    loads = [os.getloadavg()[0]]
    for round_ in range(rounds + 1):
        for name in names:
            command = [sys.executable, __file__, "throughput", "--sagas", str(sagas)]
            done = subprocess.run(
                [*command, "--contenders", name], capture_output=True, text=True, check=True
            )
            found = RESULT.search(done.stdout)
            if found is None:
                raise SystemExit(f"{name}: no result line in\n{done.stdout}{done.stderr}")
            elapsed, rate, waited, steady, cpu, own = (
                float(v.replace(",", "")) for v in found.groups()
            )
            result = [rate, steady, cpu, own, waited / elapsed * 100]
            label = f"round {round_}" if round_ else "warm-up (not counted)"
            print(f"{label} {name}: {figures(result)}, load {os.getloadavg()[0]:.1f}", flush=True)
            if round_:
                runs[name].append(result)
                loads.append(os.getloadavg()[0])
    medians = {
        name: [statistics.median(column) for column in zip(*runs[name], strict=True)]
        for name in names
    }
    print(f"\n{sagas:,} sagas, {rounds} round(s), medians, load {min(loads):.1f}-{max(loads):.1f}:")
    for name, values in medians.items():
        print(f"  {name}: {figures(values)}")
    if "choreo" in medians:
        mine = medians["choreo"]
        for name in names:
            if name != "choreo":
                other = medians[name]
                print(
                    f"  choreo/{name}: events/s {mine[0] / other[0]:.2f}, steady "
                    f"{mine[1] / other[1]:.2f}, CPU per event {mine[2] / other[2]:.2f} (own "
                    f"thread {mine[3] / other[3]:.2f})"
                )


def figures(values: list[float]) -> str:
    return ", ".join(f"{value:,.0f} {unit}" for value, unit in zip(values, FIGURES, strict=True))


def path_inputs(sagas: int) -> list[tuple[str, Any, str]]:
    """(saga id, event, event id) of ``sagas`` sagas, each step of every saga before the next
    step of any: no saga has two events in one batch, as in ``throughput``."""
    import random

    import saga_defs as d

    rng = random.Random(1)
    scripts = {f"s-{i:07d}": script(i, f"s-{i:07d}") for i in range(sagas)}
    order = [
        (sid, events[k]) for k in range(4) for sid, events in scripts.items() if k < len(events)
    ]
    order += [(sid, d.cancelled(sid)) for sid, events in scripts.items() if len(events) == 2]
    return [(sid, event, str(uuid.UUID(int=rng.getrandbits(128)))) for sid, event in order]


def state_path(sagas: int, contender: str) -> dict[str, float]:
    """CPU seconds per part of the state path over ``sagas`` sagas' events (and the count)."""
    if contender == "naive":
        return naive_state_path(sagas)
    from choreo._saga.engine import Engine, Incoming
    from choreo._saga.store import StateStore

    engine = Engine([definition("bench")])
    trace = {"traceparent": f"00-{'ab' * 16}-{'cd' * 8}-01"}
    inputs = [
        Incoming(sid, event, event_id, trace, 1.7e9, "bench")
        for sid, event, event_id in path_inputs(sagas)
    ]
    store = StateStore()
    store.load(0, {})
    gc.collect()
    gc.freeze()
    clock = time.thread_time
    spent = dict.fromkeys(("read", "engine", "write", "pack"), 0.0)
    for incoming in inputs:
        began = clock()
        state = store.get(0, incoming.saga_id)
        read = clock()
        outcome = engine.handle(state, incoming, 1.8e9, copy=False)
        decided = clock()
        data = None if outcome.state is None else outcome.state.to_bytes()
        written = clock()
        store.apply({(0, incoming.saga_id): data})
        packed = clock()
        spent["read"] += read - began
        spent["engine"] += decided - read
        spent["write"] += written - decided
        spent["pack"] += packed - written
    return {**spent, "events": float(len(inputs))}


def naive_state_path(sagas: int) -> dict[str, float]:
    """The naive tracker's same path: its dict of states (no read, no pack), its saga logic
    (``engine``) and its JSON. Each event type is decoded once and copied per saga with its
    order id (the events differ in nothing else), so under ``--callgrind`` the preparing costs
    about what the choreo path's does (the models and ids) and the difference is the path."""
    from io import BytesIO

    import fastavro
    from naive_tracker import NaiveTracker, state_bytes

    from choreo._schemas import Catalog, Codec

    codec = Codec(Catalog.load(ROOT / "schemas"))
    tracker = NaiveTracker(BOOTSTRAP, "bench", {}, "unused")
    tracker.states[0] = {}
    decoded: dict[str, tuple[str, dict[str, Any]]] = {}
    inputs = []
    for sid, event, event_id in path_inputs(sagas):
        if event.event_type not in decoded:
            data = codec.encode(event)
            event_type, schema = tracker.readers[data[:10]]
            decoded[event.event_type] = (
                event_type,
                fastavro.schemaless_reader(BytesIO(data[10:]), schema, None),
            )
        event_type, payload = decoded[event.event_type]
        inputs.append((sid, event_type, event_id, {**payload, "order_id": sid}))
    held = tracker.states[0]
    gc.collect()
    gc.freeze()
    clock = time.thread_time
    spent = dict.fromkeys(("engine", "write"), 0.0)
    for sid, event_type, event_id, payload in inputs:
        began = clock()
        tracker.track(0, sid, event_type, event_id, payload)
        decided = clock()
        state_bytes(held[sid])
        written = clock()
        spent["engine"] += decided - began
        spent["write"] += written - decided
    return {**spent, "events": float(len(inputs))}


def path(sagas: int, contender: str, callgrind: bool) -> None:
    if not callgrind:
        spent = state_path(sagas, contender)
        events = spent.pop("events")
        parts = ", ".join(f"{name} {s / events * 1e6:.1f}" for name, s in spent.items())
        print(
            f"{events:,.0f} events: {sum(spent.values()) / events * 1e6:.1f} us CPU per event "
            f"({parts}); load {os.getloadavg()[0]:.1f}"
        )
        return
    counts = [instructions(n, contender) for n in (40, 120)]
    (few, few_events), (many, many_events) = counts
    per_event = (many - few) / (many_events - few_events)
    print(f"{contender} state path: {per_event:,.0f} instructions per event (callgrind)")


def instructions(sagas: int, contender: str) -> tuple[int, int]:
    """Instructions of ``path --sagas N`` under callgrind, and its event count."""
    command = [
        "valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null",
        sys.executable, __file__, "path", "--sagas", str(sagas), "--contender", contender,
        "--events-only",
    ]  # fmt: skip
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
    found = re.search(r"Collected : (\d+)", done.stderr)
    if found is None:
        raise SystemExit(f"no instruction count from callgrind:\n{done.stderr}")
    return int(found[1]), int(done.stdout.split()[-1])


def count_finished(tracker: Any) -> set[Any]:
    """The sagas whose committed state is terminal, as the tracker's store takes them in
    (every committed state passes through ``StateStore.apply`` as JSON; the store's packed
    states would cost an unpack each to read back)."""
    from choreo._saga.state import TERMINAL

    finished: set[Any] = set()
    apply = tracker.store.apply
    terminal = {status.value.encode() for status in TERMINAL}

    def counting(changes: Any, bodies: Any = None, wakes: Any = None) -> Any:
        moved = apply(changes, bodies, wakes)
        for key, data in changes.items():
            if data is not None and (found := SAGA_STATUS.search(data)) and found[1] in terminal:
                finished.add(key)
        return moved

    tracker.store.apply = counting
    return finished


def memory(open_sagas: int) -> None:
    """Writes the states here, restores them in a fresh process: this one's resident memory
    is full of what writing them left behind."""
    name = f"bench-{uuid.uuid4().hex[:6]}"
    writer = new_tracker(name, ROOT / "schemas")
    topic = writer.topology.changelog
    create_topic(topic)
    out = producer()
    sizes = 0
    try:
        for i in range(open_sagas):
            saga_id = f"{name}-{i:07d}"
            raw = open_state(writer.engine, saga_id).to_bytes()
            sizes += len(raw)
            send(out, topic, saga_id.encode(), raw, None)
        out.flush(120)
        print(f"wrote {open_sagas:,} open saga states, {sizes / open_sagas:,.0f} bytes each")
        subprocess.run([sys.executable, __file__, "restore", name], check=True)
    finally:
        delete_topics([topic])


def open_state(engine: Any, saga_id: str) -> Any:
    """A saga waiting for payment, as the tracker makes it: started (with trace context),
    stock reserved; its own random event ids and times, as in a real changelog."""
    import random

    import saga_defs as d

    from choreo._saga.engine import Incoming

    now = time.time() - random.uniform(0, 600)
    trace = {"traceparent": f"00-{uuid.uuid4().hex}-{uuid.uuid4().hex[:16]}-01"}
    placed = Incoming(saga_id, d.placed(saga_id), str(uuid.uuid4()), trace)
    state = engine.handle(None, placed, now).state
    reserved = Incoming(saga_id, d.reserved(saga_id), str(uuid.uuid4()))
    return engine.handle(state, reserved, now + random.uniform(0.01, 5)).state


def restore(name: str) -> None:
    """The child of ``memory``: the tracker's own restore, and what it added to this process."""
    restorer = new_tracker(name, ROOT / "schemas")
    gc.collect()
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    before, peak_before = rss_mb(), peak_rss_mb()
    started = time.monotonic()
    held = restorer.restore({0, 1, 2})
    restore_s = time.monotonic() - started
    gc.collect()
    after, peak_after = rss_mb(), peak_rss_mb()
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    held_mb = rss_mb() - before
    print(
        f"restored {held:,} open sagas in {restore_s:.1f}s; resident +{after - before:,.0f} MB "
        f"(peak +{peak_after - peak_before:,.0f} MB), +{held_mb:,.0f} MB once malloc_trim "
        f"handed freed memory back: {held_mb * 2**20 / held:,.0f} bytes per open saga "
        f"(until then {after - before - held_mb:,.0f} MB freed, e.g. the changelog's JSON "
        f"once packed, stay resident for reuse); {len(restorer.timers):,} timers armed"
    )
    print(breakdown(restorer, held))


def rebalance(open_sagas: int, rounds: int) -> None:
    """A second instance joins the first's group and leaves again, ``rounds`` times; each join
    alternately with the first instance keeping the states of the partitions it keeps (the
    tracker since 2026-12-05) and forgetting them (a transaction failed: memory is not trusted,
    as every rebalance was before), timed by the first instance's restore at the join."""
    import logging
    import threading

    from choreo._config import KafkaConfig, ServiceConfig
    from choreo._schemas import Catalog
    from choreo.saga import SagaTracker

    suffix = f"bench-{uuid.uuid4().hex[:6]}"
    schemas_dir = schemas(suffix)
    name = f"bench-{suffix}"

    def tracker(instance: str) -> Any:
        config = ServiceConfig(
            kafka=KafkaConfig(bootstrap_servers=BOOTSTRAP),
            schemas_dir=schemas_dir,
            instance_id=instance,
        )
        return SagaTracker([definition(name)], config, catalog=Catalog.load(schemas_dir))

    restores: list[tuple[str, str]] = []

    class Restores(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if record.getMessage().startswith("restored"):
                restores.append((record.threadName or "", record.getMessage()))

    logging.getLogger("choreo.saga").addHandler(Restores())
    logging.getLogger("choreo.saga").setLevel(logging.INFO)
    first = tracker("first")
    first.start()  # creates the topics
    topics = [c.name for c in first.topology.topic_configs(first.catalog)]
    out = producer()
    try:
        for i in range(open_sagas):
            saga_id = f"{name}-{i:07d}"
            state = open_state(first.engine, saga_id).to_bytes()
            send(out, first.topology.changelog, saga_id.encode(), state, None)
        out.flush(120)
        while not first.store.partitions:
            first.poll_once()
        everything = len(first.store.partitions)
        print(f"{open_sagas:,} open sagas: the first instance {restores[-1][1]}")
        timings: dict[str, list[float]] = {"kept": [], "forgotten": []}
        for round_ in range(rounds * 2):
            how = ("kept", "forgotten")[round_ % 2]
            first._suspect = how == "forgotten"
            stop = threading.Event()
            second = tracker(f"second-{round_}")
            seen = len(restores)
            thread = threading.Thread(target=_serve, args=(second, stop), name="second")
            thread.start()
            while not second.store.partitions or len(first.store.partitions) == everything:
                first.poll_once()
            joined = [m for t, m in restores[seen:] if t == "MainThread"]
            if (how == "kept") != ("kept through the rebalance" in joined[-1]):
                raise SystemExit(f"the {how} round did not run as meant: {joined[-1]}")
            timings[how].append(float(re.findall(r" in ([\d.]+)s", joined[-1])[0]))
            print(f"join, {how:9}: the first instance {joined[-1]}")
            stop.set()
            while thread.is_alive() or len(first.store.partitions) < everything:
                first.poll_once()
        kept = statistics.median(timings["kept"])
        forgotten = statistics.median(timings["forgotten"])
        print(
            f"the first instance's restore at a join, median of {rounds}: kept {kept:.2f}s, "
            f"forgotten {forgotten:.2f}s ({forgotten / max(kept, 1e-3):,.0f}x); load "
            f"{os.getloadavg()[0]:.1f}"
        )
    finally:
        first.close()
        delete_topics(topics)


def _serve(tracker: Any, stop: Any) -> None:
    """A tracker polled in its own thread until ``stop`` is set, then closed (leaving its group)."""
    tracker.start()
    while not stop.is_set():
        tracker.poll_once()
    tracker.close()


def breakdown(tracker: Any, held: int) -> str:
    """Where the bytes per open saga go, by ``sys.getsizeof`` (before pymalloc rounds each
    object up to 16 bytes): the store's and the timers' insides, read for this report only."""
    states = tracker.store._partitions.values()
    lists = [ids for by_second in tracker.timers._lists.values() for ids in by_second.values()]
    parts = {
        "packed states": sum(sys.getsizeof(data) for part in states for data in part.values()),
        "saga ids": sum(sys.getsizeof(saga_id) for part in states for saga_id in part),
        "dict tables": sum(sys.getsizeof(part) for part in states),
        "timer lists": sum(sys.getsizeof(ids) for ids in lists),
    }
    return "per open saga: " + ", ".join(f"{k} {v / held:,.0f}" for k, v in parts.items())


def rss_mb() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def create_topic(topic: str) -> None:
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": BOOTSTRAP})
    for future in admin.create_topics([NewTopic(topic, 3, 1)]).values():
        future.result(30)


def delete_topics(topics: list[str]) -> None:
    """The bench's topics go away with it: they are big and nobody reads them again."""
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": BOOTSTRAP})
    for future in admin.delete_topics(topics).values():
        try:
            future.result(30)
        except Exception as error:  # a missing topic is fine; say anything else
            print(f"could not delete a bench topic: {error}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    modes = parser.add_subparsers(dest="mode", required=True)
    run = modes.add_parser("throughput", help="saga events per second, exactly-once")
    run.add_argument("--sagas", type=int, default=20_000)
    run.add_argument(
        "--contenders",
        default="choreo",
        help="comma-separated, of choreo and naive (bench/contenders/naive_tracker.py); more "
        "than one, or --rounds, runs each in its own process, alternated",
    )
    run.add_argument("--rounds", type=int, default=1)
    state = modes.add_parser("path", help="the state path per event, without Kafka")
    state.add_argument("--sagas", type=int, default=2_000)
    state.add_argument("--callgrind", action="store_true", help="instructions, not CPU time")
    state.add_argument("--contender", choices=("choreo", "naive"), default="choreo")
    state.add_argument("--events-only", action="store_true", help=argparse.SUPPRESS)
    held = modes.add_parser("memory", help="resident memory per 100,000 open sagas")
    held.add_argument("--open", type=int, default=100_000)
    moved = modes.add_parser("rebalance", help="a join's restore, states kept or forgotten")
    moved.add_argument("--open", type=int, default=100_000)
    moved.add_argument("--rounds", type=int, default=3)
    answer = modes.add_parser("respond")  # the responder subprocess of `throughput`
    answer.add_argument("schemas_dir")
    answer.add_argument("source")
    restorer = modes.add_parser("restore")  # the restoring subprocess of `memory`
    restorer.add_argument("name")
    args = parser.parse_args()
    if args.mode == "throughput":
        names = args.contenders.split(",")
        if unknown := set(names) - {"choreo", "naive"}:
            parser.error(f"unknown contender(s): {', '.join(sorted(unknown))}")
        if len(names) == 1 and args.rounds == 1:
            throughput(min(args.sagas, 200_000), names[0])
        else:
            compare(min(args.sagas, 200_000), names, args.rounds)
    elif args.mode == "path" and args.events_only:  # the child of path --callgrind
        print(int(state_path(min(args.sagas, 20_000), args.contender)["events"]))
    elif args.mode == "path":
        path(min(args.sagas, 20_000), args.contender, args.callgrind)
    elif args.mode == "memory":
        memory(min(args.open, 500_000))
    elif args.mode == "restore":
        restore(args.name)
    elif args.mode == "rebalance":
        rebalance(min(args.open, 500_000), max(1, min(args.rounds, 10)))
    else:
        respond(args.schemas_dir, args.source)


if __name__ == "__main__":
    main()
