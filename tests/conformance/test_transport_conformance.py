"""One behaviour suite for every transport: what the runtime relies on, checked on each.

The in-memory transport runs here too, so unit tests on it mean something. The
real backends talk to the real broker of the ``kafka`` fixture (the local
stack, started or reused) and are marked ``stack``. Every test
uses its own topics and groups, so reruns against one broker never interfere.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import pytest
from confluent_kafka.admin import AdminClient

from choreo._config import KafkaConfig
from choreo._errors import ConfigError, TransportError
from choreo._transport.base import (
    Consumer,
    Producer,
    Record,
    TopicConfig,
    TopicPartition,
    Transport,
)
from choreo._transport.memory import MemoryTransport, partition_for_key
from choreo._transport.registry import make_transport

# Members notice a rebalance within ~0.5 s instead of 3 s (the heartbeat interval).
TEST_OPTIONS: dict[str, dict[str, str]] = {
    "confluent": {"heartbeat.interval.ms": "500"},
    "aiokafka": {"heartbeat.interval.ms": "500"},
    "memory": {},
}

T = TypeVar("T")


# --- helpers -------------------------------------------------------------------------------


def run(coroutine: Coroutine[Any, Any, T], timeout_s: float = 30.0) -> T:
    """Run one test body on a fresh loop, bounded so a hang fails instead of stalling."""

    async def bounded() -> T:
        async with asyncio.timeout(timeout_s):
            return await coroutine

    return asyncio.run(bounded())


def unique(prefix: str) -> str:
    return f"choreo-test-{prefix}-{uuid.uuid4().hex[:10]}"


def transport_for(name: str, bootstrap: str) -> Transport:
    config = KafkaConfig(bootstrap_servers=bootstrap, client_options=TEST_OPTIONS[name])
    return make_transport(name, config)


@pytest.fixture(scope="module")
def broker(kafka: str) -> str:
    return kafka


@pytest.fixture(
    params=[
        pytest.param("memory"),
        pytest.param("confluent", marks=pytest.mark.stack),
        pytest.param("aiokafka", marks=pytest.mark.stack),
    ]
)
def transport(request: pytest.FixtureRequest) -> Iterator[Transport]:
    name: str = request.param
    bootstrap = "memory" if name == "memory" else request.getfixturevalue("broker")
    yield transport_for(name, bootstrap)


class Clients:
    """Consumers and producers of one test, all closed at the end even if it fails."""

    def __init__(self, transport: Transport) -> None:
        self.transport = transport
        self._open: list[Consumer | Producer] = []

    def consumer(self, group: str, client_id: str | None = None) -> Consumer:
        consumer = self.transport.consumer(group, client_id or unique("consumer"))
        self._open.append(consumer)
        return consumer

    def producer(self) -> Producer:
        producer = self.transport.producer(unique("producer"))
        self._open.append(producer)
        return producer

    async def close_all(self) -> None:
        for client in reversed(self._open):
            with contextlib.suppress(Exception):  # the test's own failure is the one to report
                await client.close()


@asynccontextmanager
async def clients(transport: Transport) -> AsyncIterator[Clients]:
    opened = Clients(transport)
    try:
        yield opened
    finally:
        await opened.close_all()


class Listener:
    """Records rebalance calls; with a consumer, commits what the test took, on revoke.

    ``processed`` is the next offset per partition after the records the test
    took from ``poll``: exactly what a runtime commits in ``on_revoked``.
    """

    def __init__(self) -> None:
        self.assigned: list[list[TopicPartition]] = []
        self.revoked: list[list[TopicPartition]] = []
        self.processed: dict[TopicPartition, int] = {}
        self.commit_with: Consumer | None = None

    async def on_assigned(self, partitions: list[TopicPartition]) -> None:
        self.assigned.append(sorted(partitions))

    async def on_revoked(self, partitions: list[TopicPartition]) -> None:
        self.revoked.append(sorted(partitions))
        if self.commit_with is not None:
            mine = {tp: o for tp, o in self.processed.items() if tp in partitions}
            await self.commit_with.commit(mine)

    def saw(self, records: list[Record]) -> None:
        for r in records:
            self.processed[TopicPartition(r.topic, r.partition)] = r.offset + 1


async def poll_until(
    consumer: Consumer,
    done: Callable[[list[Record]], bool],
    *,
    into: list[Record] | None = None,
    listener: Listener | None = None,
    timeout_s: float = 20.0,
    max_records: int = 500,
) -> list[Record]:
    """Poll until ``done(records)``; fail with what arrived if it never is."""
    records = [] if into is None else into
    deadline = time.monotonic() + timeout_s
    while not done(records):
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up after {timeout_s}s with {len(records)}: {records[:5]}")
        batch = await consumer.poll(max_records, 0.2)
        if listener is not None:
            listener.saw(batch)
        records.extend(batch)
    return records


async def assigned(consumer: Consumer, listener: Listener, count: int | None = None) -> None:
    """Poll (taking no records) until the group assigned this member (``count`` partitions)."""

    def ready(_: list[Record]) -> bool:
        return bool(listener.assigned) and count in (None, len(listener.assigned[-1]))

    records = await poll_until(consumer, ready)
    assert records == [], "the test expected an empty topic here"


async def pump(consumer: Consumer, stop: asyncio.Event, into: list[Record]) -> None:
    """Keep a member polling (as a runtime does) so it takes part in rebalances."""
    while not stop.is_set():
        into.extend(await consumer.poll(100, 0.1))


async def split_between(first: Consumer, second: Consumer) -> list[Record]:
    """Keep both members polling until each has one of the topic's two partitions; returns
    what they read meanwhile."""
    stop, taken = asyncio.Event(), list[Record]()
    pumps = [asyncio.create_task(pump(m, stop, taken)) for m in (first, second)]
    deadline = time.monotonic() + 20
    while not (len(first.assignment()) == len(second.assignment()) == 1):
        assert time.monotonic() < deadline, "the group never split its partitions"
        await asyncio.sleep(0.05)
    stop.set()
    await asyncio.gather(*pumps)
    return taken


async def send_all(producer: Producer, topic: str, items: list[tuple[bytes | None, bytes]]) -> None:
    futures = [await producer.send(topic, key, value, []) for key, value in items]
    await asyncio.gather(*futures)


def key_for(partition: int, partitions: int) -> bytes:
    """A key that Kafka's default partitioner sends to ``partition``."""
    return next(
        key
        for i in range(10_000)
        if partition_for_key(key := f"key-{i}".encode(), partitions) == partition
    )


# --- the suite ----------------------------------------------------------------------------


def test_records_keep_partition_order_keys_headers_and_default_partitioning(
    transport: Transport,
) -> None:
    topic, n = unique("roundtrip"), 60
    keys = [f"customer-{i % 7}".encode() for i in range(n)]

    def headers(i: int) -> list[tuple[str, bytes]]:
        return [("seq", str(i).encode()), ("bin", b"\x00\xff"), ("dup", b"a"), ("dup", b"b")]

    async def body() -> tuple[list[Record], Listener]:
        await transport.ensure_topics([TopicConfig(topic, partitions=3)])
        async with clients(transport) as c:
            producer = c.producer()
            sent = [
                await producer.send(topic, keys[i], f"value-{i}".encode(), headers(i))
                for i in range(n)
            ]
            await asyncio.gather(*sent)
            listener = Listener()
            consumer = c.consumer(unique("group"))
            await consumer.subscribe([topic], listener)
            return await poll_until(consumer, lambda rs: len(rs) >= n), listener

    started_ms = time.time() * 1000
    records, listener = run(body())

    assert listener.assigned[0] == [TopicPartition(topic, p) for p in range(3)]
    assert len(records) == n
    by_partition: dict[int, list[Record]] = defaultdict(list)
    for r in records:
        i = int(r.header("seq") or b"-1")
        assert (r.topic, r.key, r.value, r.headers) == (
            topic,
            keys[i],
            f"value-{i}".encode(),
            headers(i),
        )
        assert r.header("dup") == b"b"
        # Kafka's default partitioner (murmur2), whichever client produced.
        assert r.partition == partition_for_key(keys[i], 3)
        assert started_ms - 60_000 < r.timestamp_ms < time.time() * 1000 + 60_000
        by_partition[r.partition].append(r)
    for rs in by_partition.values():
        assert [r.offset for r in rs] == list(range(len(rs)))
        sequence = [int(r.header("seq") or b"-1") for r in rs]
        assert sequence == sorted(sequence), "records of one partition came back out of order"


def test_poll_waits_out_the_timeout_when_idle_and_returns_as_soon_as_a_record_arrives(
    transport: Transport,
) -> None:
    topic = unique("latency")

    async def body() -> tuple[list[Record], float, list[Record], float]:
        await transport.ensure_topics([TopicConfig(topic)])
        async with clients(transport) as c:
            listener = Listener()
            consumer = c.consumer(unique("group"))
            await consumer.subscribe([topic], listener)
            await assigned(consumer, listener)
            started = time.monotonic()
            idle = await consumer.poll(10, 0.5)
            idle_s = time.monotonic() - started

            producer = c.producer()

            async def send_soon() -> None:
                await asyncio.sleep(0.3)
                await send_all(producer, topic, [(b"k", b"v")])

            sending = asyncio.create_task(send_soon())
            started = time.monotonic()
            got = await poll_until(consumer, bool, timeout_s=10.0, max_records=10)
            waited_s = time.monotonic() - started
            await sending
            return idle, idle_s, got, waited_s

    idle, idle_s, got, waited_s = run(body())
    assert idle == []
    assert 0.4 <= idle_s < 3.0
    assert [(r.key, r.value) for r in got] == [(b"k", b"v")]
    assert waited_s < 3.0, f"poll took {waited_s:.2f}s to return a record sent after 0.3s"


def test_a_new_member_resumes_at_the_committed_offset_and_other_groups_are_independent(
    transport: Transport,
) -> None:
    topic, group = unique("commit"), unique("group")
    tp = TopicPartition(topic, 0)

    async def body() -> tuple[list[Record], list[Record]]:
        await transport.ensure_topics([TopicConfig(topic)])
        async with clients(transport) as c:
            await send_all(c.producer(), topic, [(b"k", str(i).encode()) for i in range(10)])
            first = c.consumer(group)
            await first.subscribe([topic], Listener())
            await poll_until(first, lambda rs: len(rs) >= 10)
            await first.commit({tp: 6})
            await first.close()

            again = c.consumer(group)
            await again.subscribe([topic], Listener())
            resumed = await poll_until(again, lambda rs: len(rs) >= 4)
            await again.close()

            other = c.consumer(unique("other-group"))
            await other.subscribe([topic], Listener())
            fresh = await poll_until(other, lambda rs: len(rs) >= 10)
            return resumed, fresh

    resumed, fresh = run(body())
    assert [r.offset for r in resumed] == [6, 7, 8, 9]
    assert [r.offset for r in fresh] == list(range(10))


def test_pause_stops_a_partition_and_resume_restarts_it(transport: Transport) -> None:
    topic = unique("pause")
    tp0 = TopicPartition(topic, 0)
    k0, k1 = key_for(0, 2), key_for(1, 2)

    async def body() -> tuple[list[Record], list[Record], list[Record], list[Record]]:
        await transport.ensure_topics([TopicConfig(topic, partitions=2)])
        async with clients(transport) as c:
            producer = c.producer()
            await send_all(producer, topic, [(k0, b"early"), (k1, b"early")])
            consumer = c.consumer(unique("group"))

            class PausesOnAssignment(Listener):
                async def on_assigned(self, partitions: list[TopicPartition]) -> None:
                    await super().on_assigned(partitions)
                    consumer.pause([tp0])  # a runtime re-applying backpressure

            await consumer.subscribe([topic], PausesOnAssignment())
            paused_from_start = await poll_until(consumer, lambda rs: len(rs) >= 1)
            paused_from_start += await consumer.poll(100, 1.0)  # time for p0 to (not) come
            consumer.resume([tp0])
            resumed = await poll_until(consumer, lambda rs: len(rs) >= 1)

            consumer.pause([tp0])
            await send_all(producer, topic, [(k, b"late") for _ in range(3) for k in (k0, k1)])
            paused_later = await poll_until(consumer, lambda rs: len(rs) >= 3)
            paused_later += await consumer.poll(100, 1.0)
            consumer.resume([tp0])
            resumed_again = await poll_until(consumer, lambda rs: len(rs) >= 3)
            return paused_from_start, resumed, paused_later, resumed_again

    paused_from_start, resumed, paused_later, resumed_again = run(body())
    assert [(r.partition, r.offset) for r in paused_from_start] == [(1, 0)]
    assert [(r.partition, r.offset) for r in resumed] == [(0, 0)]
    assert [(r.partition, r.offset) for r in paused_later] == [(1, 1), (1, 2), (1, 3)]
    assert [(r.partition, r.offset) for r in resumed_again] == [(0, 1), (0, 2), (0, 3)]


def test_a_paused_partition_that_moves_away_and_comes_back_is_read_without_a_resume(
    transport: Transport,
) -> None:
    """A pause ends with the assignment (the runtime forgets its pauses of revoked partitions):
    a partition paused, handed to a second member and back when it leaves, is read again."""
    if transport.name == "memory":
        pytest.skip("MemoryTransport gives a topic to one member of a group; others stand by")
    topic, group = unique("repause"), unique("group")
    everything = [TopicPartition(topic, 0), TopicPartition(topic, 1)]

    async def body() -> tuple[list[TopicPartition], list[Record]]:
        await transport.ensure_topics([TopicConfig(topic, partitions=2)])
        async with clients(transport) as c:
            first, first_listener = c.consumer(group, unique("a")), Listener()
            await first.subscribe([topic], first_listener)
            await assigned(first, first_listener, count=2)
            first.pause(everything)

            second = c.consumer(group, unique("b"))
            await second.subscribe([topic], Listener())
            taken = await split_between(first, second)
            deadline = time.monotonic() + 20
            moved = second.assignment()
            await second.close()
            while len(first.assignment()) < 2:  # polling, as a runtime does, to take it back
                assert time.monotonic() < deadline + 20, "the partition never came back"
                taken += await first.poll(100, 0.1)
            producer = c.producer()
            await send_all(producer, topic, [(key_for(tp.partition, 2), b"x") for tp in moved])
            back = moved[0].partition
            taken += await poll_until(first, lambda rs: any(r.partition == back for r in rs))
            return moved, taken

    moved, taken = run(body(), timeout_s=60)
    assert taken, "nothing was read"
    assert {r.partition for r in taken} >= {tp.partition for tp in moved}


@pytest.mark.stack
def test_aiokafka_keeps_what_it_fetched_for_a_partition_while_it_is_paused(
    broker: str, caplog: pytest.LogCaptureFixture
) -> None:
    """aiokafka's own pause throws away what it had fetched for the partition: a service
    pausing for backpressure (20-odd times per 100,000 records in the consume bench) read it
    all again after each resume, and waited for it. Paused here after every poll, every record
    comes once, in order, and aiokafka's fetcher never says it dropped fetched records."""
    transport = transport_for("aiokafka", broker)
    topic = unique("held")
    tp = TopicPartition(topic, 0)
    count = 2000

    async def body() -> list[Record]:
        await transport.ensure_topics([TopicConfig(topic)])
        async with clients(transport) as c:
            await send_all(c.producer(), topic, [(b"k", b"%d" % i) for i in range(count)])
            consumer = c.consumer(unique("group"))
            await consumer.subscribe([topic], Listener())
            taken: list[Record] = []
            deadline = time.monotonic() + 30
            while len(taken) < count and time.monotonic() < deadline:
                batch = await consumer.poll(100, 0.5)
                taken += batch
                if batch:
                    consumer.pause([tp])
                    assert await consumer.poll(100, 0.05) == [], "a paused partition was read"
                    consumer.resume([tp])
            return taken

    with caplog.at_level(logging.DEBUG, logger="aiokafka.consumer.fetcher"):
        taken = run(body(), timeout_s=60)
    assert [int(r.value or b"") for r in taken] == list(range(count))
    said = [record.getMessage() for record in caplog.records]
    assert any("fetch request" in line for line in said), "aiokafka's fetcher log moved"
    assert not [line for line in said if "Not returning fetched records" in line]


@pytest.mark.stack
def test_an_aiokafka_member_whose_partitions_are_all_paused_stays_in_its_group(
    broker: str,
) -> None:
    """aiokafka leaves the group of a member that has not called ``getmany`` for
    ``max.poll.interval.ms``: polls while every partition is paused (a stopped partition,
    long backpressure) must still count, or the member rejoins every few minutes and its
    partitions are read again. A review found the first version of the pause fix did that."""
    options = {**TEST_OPTIONS["aiokafka"], "max.poll.interval.ms": "3000"}
    transport = make_transport(
        "aiokafka", KafkaConfig(bootstrap_servers=broker, client_options=options)
    )
    topic = unique("all-held")
    tp = TopicPartition(topic, 0)

    async def body() -> tuple[list[list[TopicPartition]], list[Record]]:
        await transport.ensure_topics([TopicConfig(topic)])
        async with clients(transport) as c:
            consumer, listener = c.consumer(unique("group")), Listener()
            await consumer.subscribe([topic], listener)
            await assigned(consumer, listener)
            consumer.pause([tp])
            await send_all(c.producer(), topic, [(b"k", b"held")])
            held_until = time.monotonic() + 6.0  # twice max.poll.interval.ms
            while time.monotonic() < held_until:
                assert await consumer.poll(100, 0.2) == [], "a paused partition was read"
            consumer.resume([tp])
            taken = await poll_until(consumer, lambda rs: len(rs) >= 1)
            return list(listener.revoked), taken  # before close() revokes

    revoked, taken = run(body(), timeout_s=60)
    assert revoked == [], "the member left its group while its partition was paused"
    assert [r.value for r in taken] == [b"held"]


def test_an_error_raised_by_the_listener_comes_out_of_poll(transport: Transport) -> None:
    topic = unique("listener-error")

    class Broken(Exception):
        pass

    class FailsOnAssignment(Listener):
        async def on_assigned(self, partitions: list[TopicPartition]) -> None:
            raise Broken("on_assigned failed")

    async def body() -> None:
        await transport.ensure_topics([TopicConfig(topic)])
        async with clients(transport) as c:
            consumer = c.consumer(unique("group"))
            await consumer.subscribe([topic], FailsOnAssignment())
            await poll_until(consumer, lambda _: False, timeout_s=15.0)

    with pytest.raises(Broken):
        run(body())


def test_the_memory_transport_creates_a_missing_topic_with_one_partition() -> None:
    """A unit test's raw send needs no set-up; the broker refuses (next test)."""
    transport = transport_for("memory", "memory")
    assert isinstance(transport, MemoryTransport)
    topic = unique("auto-created")

    async def body() -> list[Record]:
        async with clients(transport) as c:
            await send_all(c.producer(), topic, [(b"a", b"1"), (b"b", b"2"), (None, b"3")])
            listener = Listener()
            consumer = c.consumer(unique("group"))
            await consumer.subscribe([topic], listener)
            records = await poll_until(consumer, lambda rs: len(rs) >= 3)
            assert listener.assigned[-1] == [TopicPartition(topic, 0)]
            return records

    records = run(body())
    assert [(r.partition, r.offset, r.key, r.value) for r in records] == [
        (0, 0, b"a", b"1"),
        (0, 1, b"b", b"2"),
        (0, 2, None, b"3"),
    ]
    assert [r.value for r in transport.records(topic)] == [b"1", b"2", b"3"]


MISSING_TOPIC_WAIT = {
    "confluent": {"topic.metadata.propagation.max.ms": "3000"},
    "aiokafka": {"request_timeout_ms": "3000"},
}
"""How long each client waits for a topic to appear before failing a send (default 30 s+)."""


@pytest.mark.stack
@pytest.mark.parametrize("name", ["confluent", "aiokafka"])
def test_a_send_to_a_topic_nobody_created_fails_naming_it(broker: str, name: str) -> None:
    """The dev stack's broker runs with ``auto.create.topics.enable=false``, as a production
    cluster should: a misspelt topic is an error naming it, not a new 1-partition topic."""
    topic = unique("never-created")
    config = KafkaConfig(bootstrap_servers=broker, client_options=MISSING_TOPIC_WAIT[name])
    transport = make_transport(name, config)

    async def body() -> None:
        async with clients(transport) as c:
            with pytest.raises(TransportError, match=topic):
                await send_all(c.producer(), topic, [(b"typo", b"1")])

    run(body())
    topics = AdminClient({"bootstrap.servers": broker}).list_topics(timeout=10).topics
    assert topic not in topics


def test_two_members_of_a_group_split_the_partitions_and_the_first_is_revoked(
    transport: Transport,
) -> None:
    if transport.name == "memory":
        pytest.skip("MemoryTransport gives a topic to one member of a group; others stand by")
    topic, group = unique("split"), unique("group")
    everything = [TopicPartition(topic, 0), TopicPartition(topic, 1)]

    async def body() -> tuple[Listener, Listener, list[TopicPartition], list[TopicPartition]]:
        await transport.ensure_topics([TopicConfig(topic, partitions=2)])
        async with clients(transport) as c:
            first, first_listener = c.consumer(group, unique("a")), Listener()
            await first.subscribe([topic], first_listener)
            await assigned(first, first_listener, count=2)

            second, second_listener = c.consumer(group, unique("b")), Listener()
            await second.subscribe([topic], second_listener)
            await split_between(first, second)
            return first_listener, second_listener, first.assignment(), second.assignment()

    first_listener, second_listener, first_has, second_has = run(body())
    assert first_listener.assigned[0] == everything
    assert first_listener.revoked, "the first member was not told its partitions were revoked"
    if transport.name == "confluent":  # cooperative: only the partition changing owner moves
        assert first_listener.revoked[0] == second_has, first_listener.revoked
    assert sorted(first_has + second_has) == everything
    assert second_listener.assigned[-1] == second_has


def test_a_member_that_commits_in_on_revoked_hands_over_without_gaps_or_repeats(
    transport: Transport,
) -> None:
    topic, group = unique("handover"), unique("group")
    tp = TopicPartition(topic, 0)

    async def body() -> tuple[Listener, list[Record], list[Record]]:
        await transport.ensure_topics([TopicConfig(topic)])
        async with clients(transport) as c:
            producer = c.producer()
            await send_all(producer, topic, [(b"k", b"before") for _ in range(4)])

            first, first_listener = c.consumer(group, unique("a")), Listener()
            first_listener.commit_with = first
            await first.subscribe([topic], first_listener)
            taken_by_first = await poll_until(
                first, lambda rs: len(rs) >= 4, listener=first_listener
            )

            # A second member joins while the first keeps polling, as a runtime would.
            second, second_listener = c.consumer(group, unique("b")), Listener()
            second_listener.commit_with = second
            await second.subscribe([topic], second_listener)
            stop, taken_by_second = asyncio.Event(), list[Record]()
            pumps = [
                asyncio.create_task(pump(first, stop, taken_by_first)),
                asyncio.create_task(pump(second, stop, taken_by_second)),
            ]
            deadline = time.monotonic() + 20
            while not second_listener.assigned:
                assert time.monotonic() < deadline, "the second member never joined"
                await asyncio.sleep(0.05)
            stop.set()
            await asyncio.gather(*pumps)
            first_listener.saw(taken_by_first[4:])

            await first.close()  # on_revoked commits what the first member took
            await send_all(producer, topic, [(b"k", b"after") for _ in range(6)])
            await poll_until(
                second, lambda rs: len(rs) >= 10 - len(taken_by_first), into=taken_by_second
            )
            return first_listener, taken_by_first, taken_by_second

    first_listener, by_first, by_second = run(body())
    assert first_listener.revoked[-1] == [tp], "close() did not call on_revoked"
    offsets = sorted(r.offset for r in by_first + by_second)
    assert offsets == list(range(10)), "records were lost or read twice across the handover"


def test_ensure_topics_creates_partitions_and_settings_and_is_idempotent(
    transport: Transport, request: pytest.FixtureRequest
) -> None:
    plain = TopicConfig(unique("plain"), partitions=3)
    compacted = TopicConfig(
        unique("compacted"), partitions=1, retention_ms=3_600_000, compacted=True
    )

    async def body() -> Listener:
        await transport.ensure_topics([plain, compacted])
        await transport.ensure_topics([plain, compacted])
        await transport.ensure_topics([TopicConfig(plain.name, partitions=5)])  # left as it is
        async with clients(transport) as c:
            listener = Listener()
            consumer = c.consumer(unique("group"))
            await consumer.subscribe([plain.name, compacted.name], listener)
            await assigned(consumer, listener, count=4)
            return listener

    listener = run(body())
    assert listener.assigned[-1] == sorted(
        [TopicPartition(plain.name, p) for p in range(3)] + [TopicPartition(compacted.name, 0)]
    )
    if transport.name != "memory":  # the memory broker keeps everything, compacts nothing
        settings = _broker_topic_settings(request.getfixturevalue("broker"), compacted.name)
        assert settings["cleanup.policy"] == "compact"
        assert settings["retention.ms"] == "3600000"


def _broker_topic_settings(broker: str, topic: str) -> dict[str, str]:
    """The topic's configs as the broker reports them (independent of the transport)."""
    from confluent_kafka.admin import (  # type: ignore[attr-defined]  # re-exported at runtime
        AdminClient,
        ConfigResource,
    )

    admin = AdminClient({"bootstrap.servers": broker})
    resource = ConfigResource(ConfigResource.Type.TOPIC, topic)
    entries = admin.describe_configs([resource])[resource].result(timeout=10)
    return {name: str(entry.value) for name, entry in entries.items()}


def test_an_impossible_send_fails_its_delivery_future_and_the_producer_carries_on(
    transport: Transport,
) -> None:
    topic = unique("too-large")

    async def body() -> BaseException | None:
        await transport.ensure_topics([TopicConfig(topic)])
        async with clients(transport) as c:
            producer = c.producer()
            too_large = await producer.send(topic, b"k", b"x" * 2_000_000, [])
            try:
                await too_large
            except TransportError as error:
                failure: BaseException | None = error
            else:
                failure = None
            await send_all(producer, topic, [(b"k", b"fits")])
            consumer = c.consumer(unique("group"))
            await consumer.subscribe([topic], Listener())
            records = await poll_until(consumer, bool)
            assert [r.value for r in records] == [b"fits"]
            return failure

    failure = run(body())
    assert isinstance(failure, TransportError), "a 2 MB record was accepted"
    assert topic in str(failure)


def test_group_members_lists_the_client_ids_of_a_live_group(transport: Transport) -> None:
    topic, group, client_id = unique("members"), unique("group"), unique("member")

    async def body() -> tuple[list[str], list[str]]:
        await transport.ensure_topics([TopicConfig(topic)])
        async with clients(transport) as c:
            listener = Listener()
            consumer = c.consumer(group, client_id)
            await consumer.subscribe([topic], listener)
            await assigned(consumer, listener)
            return await transport.group_members(group), await transport.group_members(
                unique("no-such-group")
            )

    members, nobody = run(body())
    assert members == [client_id]
    assert nobody == []


def test_check_reachable_passes_for_a_live_broker(transport: Transport) -> None:
    run(transport.check_reachable(5.0))


@pytest.mark.parametrize("name", ["confluent", "aiokafka"])
def test_check_reachable_names_the_bootstrap_servers_when_nothing_answers(name: str) -> None:
    nowhere = "127.0.0.1:1"
    started = time.monotonic()
    with pytest.raises(TransportError, match=nowhere):
        run(transport_for(name, nowhere).check_reachable(2.0))
    assert time.monotonic() - started < 10.0


def test_an_unknown_transport_name_lists_the_valid_ones() -> None:
    with pytest.raises(ConfigError, match="'aiokafka', 'confluent', 'memory'"):
        make_transport("kafka-python", KafkaConfig())
