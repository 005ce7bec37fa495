"""A saga world on the real broker: fresh topics, a tracker process, and the tests as services.

Each ``World`` copies the project's schemas with every topic renamed ``<topic>.<random>`` and
runs its own saga name (so its own consumer group and changelog). Tests publish the business
events the services would, read what the tracker emitted with a ``read_committed`` consumer,
and read the saga states back from the changelog.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import tomllib
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path

import confluent_kafka as ck
import pytest

from choreo import _headers
from choreo._saga.state import SagaState
from choreo._saga.store import changelog_topic, read_changelog
from choreo._schemas import Catalog, Codec, Event

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
_FINISHED = ("completed", "compensated", "failed")


def isolated_catalog(target: Path) -> dict[str, str]:
    """Copy schemas/ with every topic renamed; returns original name → test name."""
    shutil.copytree(ROOT / "schemas", target)
    catalog = tomllib.loads((ROOT / "schemas" / "catalog.toml").read_text())
    suffix = uuid.uuid4().hex[:8]
    renamed: dict[str, str] = {}
    lines = []
    for name, spec in catalog["topics"].items():
        renamed[name] = f"{name}.{suffix}"
        events = ", ".join(f'"{e}"' for e in spec["events"])
        lines += [
            f'[topics."{renamed[name]}"]',
            f"events = [{events}]",
            f'key = "{spec["key"]}"',
            f"partitions = {spec['partitions']}",
            "",
        ]
    (target / "catalog.toml").write_text("\n".join(lines))
    return renamed


class Seen:
    """One record the tracker emitted, decoded."""

    def __init__(self, event: Event, headers: dict[str, str]) -> None:
        self.event = event
        self.headers = headers

    @property
    def type(self) -> str:
        return self.event.event_type


class World:
    def __init__(self, kafka: str, tmp: Path, **env: str) -> None:
        self.kafka = kafka
        self.tmp = tmp
        self.schemas = tmp / "schemas"
        self.topics = isolated_catalog(self.schemas)
        self.catalog = Catalog.load(self.schemas)
        self.codec = Codec(self.catalog)
        self.name = f"order-{uuid.uuid4().hex[:8]}"
        self.source = f"choreo-saga-{self.name}"
        self.env = {
            **os.environ,
            "PYTHONPATH": f"{ROOT}{os.pathsep}{HERE}",
            "CHOREO_BOOTSTRAP_SERVERS": kafka,
            "CHOREO_SCHEMAS_DIR": str(self.schemas),
            "CHOREO_TEST_SAGA_NAME": self.name,
            **env,
        }
        _create_topics(kafka, self.catalog)  # before publishing: no auto-created 1-partition ones
        self.producer = ck.Producer(
            {"bootstrap.servers": kafka, "partitioner": "murmur2_random", "linger.ms": 5}
        )
        self.emitted: dict[str, list[Seen]] = defaultdict(list)
        self.responders: dict[str, Callable[[Seen], Event | None]] = {}
        self.processes: list[subprocess.Popen[str]] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._models = {m.event_type: m for m in _all_models()}

    # -- the services' side ---------------------------------------------------------------

    def publish(
        self,
        event: Event,
        *,
        saga_id: str | None = None,
        event_id: str | None = None,
        causation_id: str | None = None,
        headers: dict[str, str | bytes] | None = None,
    ) -> str:
        event_id = event_id or str(uuid.uuid4())
        spec = self.catalog.topic_of(event.event_type)
        key = str(getattr(event, spec.key))
        wire = _headers.event_headers(
            event.event_type.encode(), b"tests", event_id, saga_id or key, causation_id
        )
        wire += [(k, v if isinstance(v, bytes) else v.encode()) for k, v in (headers or {}).items()]
        self.producer.produce(
            spec.name, key=key.encode(), value=self.codec.encode(event), headers=wire
        )
        self.producer.flush(10)
        return event_id

    def _read(self) -> None:
        consumer = ck.Consumer(
            {
                "bootstrap.servers": self.kafka,
                "group.id": f"reader-{uuid.uuid4().hex}",
                "isolation.level": "read_committed",
                "enable.auto.commit": False,
            }
        )
        wanted = [
            ck.TopicPartition(self.topics[t], p, ck.OFFSET_BEGINNING)
            for t in ("shop.orders", "shop.inventory", "shop.payments", "shop.sagas")
            for p in range(3)
        ]
        consumer.assign(wanted)
        while not self._stop.is_set():
            for message in consumer.consume(500, timeout=0.2):
                if message.error() is not None:
                    continue
                # Tests also write foreign bytes to these topics: read, never crash on them.
                headers = {
                    k: text
                    for k, v in message.headers() or []
                    if (text := _headers.lenient_text(v)) is not None
                }
                if headers.get(_headers.SOURCE) != self.source:
                    continue
                event_type = self.codec.event_type_of(message.value())
                event = self.codec.decode(message.value(), self._models[event_type])
                seen = Seen(event, headers)
                with self._lock:
                    self.emitted[headers[_headers.CORRELATION]].append(seen)
                respond = self.responders.get(event_type)
                reply = respond(seen) if respond is not None else None
                if reply is not None:
                    self.publish(
                        reply,
                        saga_id=headers[_headers.CORRELATION],
                        causation_id=headers[_headers.ID],
                    )
        consumer.close()

    # -- the tracker ------------------------------------------------------------------------

    def start_tracker(
        self, instance: str = "a", target: str = "saga_defs:order_saga"
    ) -> subprocess.Popen[str]:
        log = (self.tmp / f"tracker-{instance}-{len(self.processes)}.log").open("w")
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "choreo._cli.main",
                "saga",
                "run",
                target,
                "--instance",
                instance,
            ],
            cwd=ROOT,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.processes.append(process)
        return process

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "choreo._cli.main", "saga", *args],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    def logs(self) -> str:
        return "\n".join(p.read_text() for p in sorted(self.tmp.glob("tracker-*.log")))

    def states(self) -> dict[str, SagaState]:
        settings = {"bootstrap.servers": self.kafka}
        by_partition = read_changelog(settings, changelog_topic(self.name))
        return {k: v for states in by_partition.values() for k, v in states.items()}

    def commands(self, saga_id: str) -> list[str]:
        with self._lock:
            return [type(s.event).__name__ for s in self.emitted[saga_id]]

    def wait(self, check: Callable[[], bool], timeout: float = 20, what: str = "") -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if check():
                return
            time.sleep(0.2)
        raise AssertionError(
            f"timed out waiting for {what or check}\n{self.describe()}\n{self.logs()[-4000:]}"
        )

    def describe(self) -> str:
        """What a timed-out wait needs to be explained: the sagas not yet finished, and per
        partition the end, the end a ``read_committed`` reader sees (a transaction left open
        holds it back) and the tracker's committed position."""
        try:
            states = self.states()
            open_sagas = [s for s in states.values() if s.status.value not in _FINISHED]
            lines = [f"{len(states)} sagas in the changelog, {len(open_sagas)} not finished:"]
            lines += [
                f"  {s.saga_id} {s.status.value} steps "
                + ", ".join(f"{name}={step.status.value}" for name, step in s.steps.items())
                + f" buffered {[e.type for e in s.buffer]}"
                for s in open_sagas[:5]
            ]
            return "\n".join(lines + self._positions())
        except Exception as exc:  # a diagnosis must never hide the failure it explains
            return f"(no diagnosis: {exc!r})"

    def _positions(self) -> list[str]:
        committed_reader = ck.Consumer(
            {
                "bootstrap.servers": self.kafka,
                "group.id": self.source,  # the tracker's group
                "isolation.level": "read_committed",
                "enable.auto.commit": False,
            }
        )
        plain = ck.Consumer({"bootstrap.servers": self.kafka, "group.id": "describe"})
        try:
            partitions = [
                ck.TopicPartition(topic, p)
                for topic in [*self.topics.values(), changelog_topic(self.name)]
                for p in range(3)
            ]
            positions = {
                (tp.topic, tp.partition): tp.offset
                for tp in committed_reader.committed(partitions, timeout=10)
            }
            lines = ["partition: end / read_committed end / tracker's committed offset"]
            for tp in partitions:
                _, end = plain.get_watermark_offsets(tp, timeout=10)
                _, stable = committed_reader.get_watermark_offsets(tp, timeout=10)
                at = positions.get((tp.topic, tp.partition))
                if end:
                    lines.append(f"  {tp.topic}[{tp.partition}]: {end} / {stable} / {at}")
            return lines
        finally:
            committed_reader.close()
            plain.close()

    def wait_status(self, saga_id: str, status: str, timeout: float = 20) -> SagaState:
        found: dict[str, SagaState] = {}

        def check() -> bool:
            state = self.states().get(saga_id)
            if state is not None and state.status.value == status:
                found["s"] = state
                return True
            return False

        self.wait(check, timeout, f"saga {saga_id} to be {status}")
        return found["s"]

    def wait_step(self, saga_id: str, step: str, status: str = "succeeded") -> None:
        """Across topics Kafka gives no order: wait before publishing what must come after."""

        def check() -> bool:
            state = self.states().get(saga_id)
            return (
                state is not None
                and state.steps.get(step) is not None
                and (state.steps[step].status.value == status)
            )

        self.wait(check, what=f"step {step} of {saga_id} to be {status}")

    def __enter__(self) -> World:
        self._reader.start()
        return self

    def __exit__(self, *exc: object) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self._stop.set()
        self._reader.join(5)


def _create_topics(kafka: str, catalog: Catalog) -> None:
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": kafka})
    futures = admin.create_topics(
        [NewTopic(spec.name, num_partitions=spec.partitions) for spec in catalog.topics.values()]
    )
    for future in futures.values():
        future.result(15)


def _all_models() -> list[type[Event]]:
    import services.events as events

    return [
        value
        for value in vars(events).values()
        if isinstance(value, type) and issubclass(value, Event) and value is not Event
    ]


@pytest.fixture
def world(kafka: str, tmp_path: Path) -> Iterator[World]:
    with World(kafka, tmp_path) as w:
        yield w


def stop(process: subprocess.Popen[str]) -> None:
    """A clean stop (SIGTERM): the tracker finishes the transaction in hand."""
    process.send_signal(signal.SIGTERM)
    process.wait(20)


def answer_compensations(world: World) -> None:
    for name in (
        "shop.orders.CancelOrder",
        "shop.inventory.ReleaseStock",
        "shop.payments.RefundPayment",
    ):
        world.responders[name] = confirm_compensations


def confirm_compensations(seen: Seen) -> Event | None:
    """Play the services: confirm every compensation, except for sagas named ``park-*``."""
    import saga_defs as d

    order_id = str(getattr(seen.event, "order_id", ""))
    if order_id.startswith("park-"):
        return None
    replies = {"CancelOrder": d.cancelled, "ReleaseStock": d.released, "RefundPayment": d.refunded}
    make = replies.get(type(seen.event).__name__)
    return make(order_id) if make is not None else None


def oid(prefix: str = "o") -> str:
    """A fresh saga (order) id."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


@contextlib.contextmanager
def tracked(kafka: str, tmp: Path, target: str = "saga_defs:order_saga") -> Iterator[World]:
    """A world whose tracker runs ``target`` and whose services confirm compensations."""
    with World(kafka, tmp) as world:
        answer_compensations(world)
        world.start_tracker(target=target)
        yield world


@pytest.fixture(scope="module")
def shared(kafka: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    """One tracker for a module's scenarios; each test uses its own saga ids."""
    with tracked(kafka, tmp_path_factory.mktemp("saga")) as world:
        yield world
