"""An in-memory Kafka for unit tests: one process, one event loop, no broker.

It behaves like Kafka wherever the runtime can tell, so a service tested on it
behaves the same on a real cluster:

* Topics have N partitions (``ensure_topics``) or are auto-created with one
  partition on first send, like a broker with ``auto.create.topics.enable``.
* A keyed record goes to ``murmur2(key) % partitions``, Kafka's default
  partitioner (the Java client's and aiokafka's; the confluent transport is
  configured to match), so a key lands on the same partition number here as on
  a cluster. Records without a key go round-robin.
* Offsets, headers and create-time timestamps as Kafka assigns them.
* Consumer groups with committed offsets: a member starts each assigned
  partition at the group's committed offset, else at the earliest record
  (nothing is ever deleted). Groups are independent of each other.
* Rebalances are eager and happen inside ``poll`` (or ``close``), like the
  real clients: ``on_revoked`` with the old assignment, then ``on_assigned``
  with the new one, positions reset to the committed offsets, pauses cleared.
* Within a group, each topic belongs wholly to the first member that
  subscribed to it; later members stand by (and are assigned nothing) until it
  closes. Real brokers would split partitions between members instead.
* ``commit`` refuses partitions the member does not own, as a real group
  refuses commits from a member that lost them.
* ``end_polls`` makes a group's pending poll return early (empty), as a real
  client's wakeup does; ``lag`` and ``backlog`` show what a group has not
  committed. Tests use them to wait for a service without sleeping.
* Records larger than ``max_message_bytes`` fail their delivery future with
  ``TransportError``, as a client refuses records over ``message.max.bytes``.

All objects must be used from one event loop (the one running the test).
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, NamedTuple

from choreo._errors import ConfigError, TransportError
from choreo._transport.base import (
    Headers,
    Membership,
    RebalanceListener,
    Record,
    TopicConfig,
    TopicPartition,
)

DEFAULT_MAX_MESSAGE_BYTES = 1_048_576
"""Like aiokafka's ``max_request_size`` and near the broker's ``message.max.bytes``."""

_MASK = 0xFFFFFFFF
_M = 0x5BD1E995


def murmur2(data: bytes) -> int:
    """Kafka's murmur2 hash (seed 0x9747b28c) as an unsigned 32-bit integer."""
    length = len(data)
    h = (0x9747B28C ^ length) & _MASK
    whole = length & ~3
    for i in range(0, whole, 4):
        k = (int.from_bytes(data[i : i + 4], "little") * _M) & _MASK
        k ^= k >> 24
        k = (k * _M) & _MASK
        h = ((h * _M) & _MASK) ^ k
    rest = length & 3
    if rest == 3:
        h ^= data[whole + 2] << 16
    if rest >= 2:
        h ^= data[whole + 1] << 8
    if rest >= 1:
        h ^= data[whole]
        h = (h * _M) & _MASK
    h ^= h >> 13
    h = (h * _M) & _MASK
    h ^= h >> 15
    return h


def partition_for_key(key: bytes, partitions: int) -> int:
    """The partition Kafka's default partitioner picks for a non-null key."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions


def _size(key: bytes | None, value: bytes | None, headers: Headers) -> int:
    return (
        len(key or b"")
        + len(value or b"")
        + sum(len(name) + len(header or b"") for name, header in headers)
    )


class Backlog(NamedTuple):
    """A partition's records a group has not committed yet (see ``MemoryTransport.backlog``)."""

    records: list[Record]
    fetched: int
    """How many of ``records`` the group's member has taken from ``poll``."""


class _Group:
    """A consumer group: committed offsets and the members in join order."""

    def __init__(self) -> None:
        self.committed: dict[TopicPartition, int] = {}
        self.members: list[MemoryConsumer] = []

    def owner(self, topic: str) -> MemoryConsumer | None:
        """The first member subscribed to ``topic``: it gets all its partitions."""
        return next((m for m in self.members if topic in m.topics), None)


class MemoryTransport:
    """An in-process broker; ``records(topic)`` shows what was produced, for assertions."""

    name = "memory"

    def __init__(self, *, max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES) -> None:
        self.max_message_bytes = max_message_bytes
        self._logs: dict[str, list[list[Record]]] = {}
        self._produced: dict[str, list[Record]] = {}
        self._round_robin: dict[str, itertools.count[int]] = {}
        self._groups: dict[str, _Group] = {}
        self._consumers: list[MemoryConsumer] = []

    # --- Transport -----------------------------------------------------------------------

    def consumer(
        self, group_id: str, client_id: str, membership: Membership | None = None
    ) -> MemoryConsumer:
        """``membership`` changes nothing here: members never crash in one process."""
        return MemoryConsumer(self, group_id, client_id)

    def transactional_producer(self, client_id: str, transactional_id: str) -> Any:
        """Exactly-once mode is built on confluent-kafka's transactional producer."""
        raise ConfigError(
            "exactly_once needs the confluent transport (CHOREO_TRANSPORT=confluent), not memory"
        )

    def producer(self, client_id: str) -> MemoryProducer:
        return MemoryProducer(self, client_id)

    async def ensure_topics(self, topics: Sequence[TopicConfig]) -> None:
        for topic in topics:
            if topic.partitions < 1:
                raise TransportError(f"topic {topic.name}: partitions must be >= 1")
            self._create(topic.name, topic.partitions)

    async def check_reachable(self, timeout_s: float) -> None:
        """Always reachable: there is no network."""

    async def group_members(self, group_id: str) -> list[str]:
        group = self._groups.get(group_id)
        return [m.client_id for m in group.members] if group else []

    # --- for tests -----------------------------------------------------------------------

    def records(self, topic: str) -> list[Record]:
        """Every record produced to ``topic``, in produce order (empty if none)."""
        return list(self._produced.get(topic, []))

    def topics(self) -> dict[str, int]:
        """Topic name → partition count."""
        return {name: len(log) for name, log in self._logs.items()}

    def lag(self, group_id: str) -> int:
        """Records the group has not committed yet, over the topics it reads.

        Kafka's consumer lag (log end minus committed offset, per partition),
        so a test can wait until a service has handled and committed everything.
        """
        return sum(len(backlog.records) for backlog in self.backlog(group_id).values())

    def backlog(self, group_id: str) -> dict[TopicPartition, Backlog]:
        """Per partition the group reads: the records it has not committed, in offset order,
        and how many of them its member has fetched (the rest it has not seen yet)."""
        group = self._groups.get(group_id)
        if group is None:
            return {}
        topics = {t for m in group.members for t in m.topics} | {tp[0] for tp in group.committed}
        backlogs: dict[TopicPartition, Backlog] = {}
        for topic in topics:
            owner = group.owner(topic)
            for partition, entries in enumerate(self._logs.get(topic, [])):
                tp = TopicPartition(topic, partition)
                committed = group.committed.get(tp, 0)
                position = owner._positions.get(tp, committed) if owner else committed
                backlogs[tp] = Backlog(entries[committed:], max(0, position - committed))
        return backlogs

    def end_polls(self, group_id: str) -> None:
        """The group's pending polls return at once, empty if nothing arrived.

        A runtime goes round its loop, committing what its workers finished,
        after each poll; a test that waits for that commit calls this instead of
        waiting out the poll's timeout.
        """
        group = self._groups.get(group_id)
        for member in group.members if group else ():
            member.end_poll()

    # --- broker internals, used by the consumers and producers ----------------------------

    def _create(self, topic: str, partitions: int) -> list[list[Record]]:
        log = self._logs.get(topic)
        if log is None:
            log = self._logs[topic] = [[] for _ in range(partitions)]
            self._produced[topic] = []
            self._wake(topic)  # subscribers get the new partitions assigned
        return log

    def _append(self, topic: str, key: bytes | None, value: bytes | None, headers: Headers) -> None:
        log = self._create(topic, 1)
        if key is None:
            counter = self._round_robin.setdefault(topic, itertools.count())
            partition = next(counter) % len(log)
        else:
            partition = partition_for_key(key, len(log))
        entries = log[partition]
        record = Record(
            topic, partition, len(entries), key, value, list(headers), time.time_ns() // 1_000_000
        )
        entries.append(record)
        self._produced[topic].append(record)
        self._wake(topic)

    def _partition(self, tp: TopicPartition) -> list[Record]:
        return self._logs[tp.topic][tp.partition]

    def _group(self, group_id: str) -> _Group:
        return self._groups.setdefault(group_id, _Group())

    def _wake(self, topic: str | None = None) -> None:
        for consumer in self._consumers:
            if topic is None or topic in consumer.topics:
                consumer.wake()


class MemoryConsumer:
    """A group member of ``MemoryTransport``; see the module docstring for its rules."""

    def __init__(self, broker: MemoryTransport, group_id: str, client_id: str) -> None:
        self.group_id = group_id
        self.client_id = client_id
        self.topics: tuple[str, ...] = ()
        self._broker = broker
        self._group = broker._group(group_id)
        self._listener: RebalanceListener | None = None
        self._assigned: list[TopicPartition] | None = None  # None: no rebalance yet
        self._positions: dict[TopicPartition, int] = {}
        self._paused: set[TopicPartition] = set()
        self._next_start = 0
        self._wakeup: asyncio.Event | None = None
        self._return_now = False
        self._closed = False

    def wake(self) -> None:
        """New records, partitions or ownership: a waiting ``poll`` looks again."""
        if self._wakeup is not None:
            self._wakeup.set()

    def end_poll(self) -> None:
        """A pending ``poll`` (or else the next one) returns at once, empty if nothing arrived."""
        self._return_now = True
        self.wake()

    async def subscribe(self, topics: Sequence[str], listener: RebalanceListener) -> None:
        self._check_open()
        self.topics = tuple(dict.fromkeys(topics))
        self._listener = listener
        if self not in self._group.members:
            self._group.members.append(self)
            self._broker._consumers.append(self)
        self._broker._wake()  # ownership may have changed for the group's other members

    async def poll(self, max_records: int, timeout_s: float) -> list[Record]:
        self._check_open()
        if self._listener is None:
            raise TransportError(f"group {self.group_id}: poll before subscribe")
        if self._wakeup is None:
            self._wakeup = asyncio.Event()
        deadline = asyncio.get_running_loop().time() + timeout_s
        while True:
            await self._rebalance_if_needed()
            records = self._fetch(max_records)
            remaining = deadline - asyncio.get_running_loop().time()
            if records or remaining <= 0 or self._return_now:
                self._return_now = False
                return records
            self._wakeup.clear()
            try:
                async with asyncio.timeout(remaining):
                    await self._wakeup.wait()
            except TimeoutError:
                pass

    async def commit(self, offsets: Mapping[TopicPartition, int]) -> None:
        self._check_open()
        owned = set(self._assigned or ())
        foreign = [tp for tp in offsets if tp not in owned]
        if foreign:
            raise TransportError(
                f"group {self.group_id}: commit for partitions this member does not own: "
                + ", ".join(f"{tp.topic}[{tp.partition}]" for tp in foreign)
            )
        self._group.committed.update(offsets)

    def pause(self, partitions: Iterable[TopicPartition]) -> None:
        owned = set(self._assigned or ())
        self._paused.update(tp for tp in partitions if tp in owned)

    def resume(self, partitions: Iterable[TopicPartition]) -> None:
        self._paused.difference_update(partitions)
        self.wake()

    def assignment(self) -> list[TopicPartition]:
        return list(self._assigned or ())

    async def positions(self, partitions: Sequence[TopicPartition]) -> dict[TopicPartition, int]:
        return {tp: self._positions[tp] for tp in partitions if tp in self._positions}

    async def high_watermarks(
        self, partitions: Sequence[TopicPartition]
    ) -> dict[TopicPartition, int]:
        logs = self._broker._logs
        return {
            tp: len(logs[tp.topic][tp.partition])
            for tp in partitions
            if tp.partition < len(logs.get(tp.topic, ()))
        }

    async def close(self) -> None:
        """Revoke (so the listener can commit), leave the group, hand partitions on."""
        if self._closed:
            return
        try:
            if self._assigned and self._listener is not None:
                await self._listener.on_revoked(list(self._assigned))
        finally:
            self._closed = True
            self._assigned = []
            if self in self._group.members:
                self._group.members.remove(self)
                self._broker._consumers.remove(self)
            self._broker._wake()

    # --- internals ----------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise TransportError(f"group {self.group_id}: consumer {self.client_id} is closed")

    def _target(self) -> list[TopicPartition]:
        logs = self._broker._logs
        return [
            TopicPartition(topic, partition)
            for topic in self.topics
            if topic in logs and self._group.owner(topic) is self
            for partition in range(len(logs[topic]))
        ]

    async def _rebalance_if_needed(self) -> None:
        target = self._target()
        if target == self._assigned:
            return
        assert self._listener is not None
        if self._assigned:
            await self._listener.on_revoked(list(self._assigned))
        committed = self._group.committed
        self._assigned = target
        self._positions = {tp: committed.get(tp, 0) for tp in target}
        self._paused.clear()
        await self._listener.on_assigned(list(target))

    def _fetch(self, max_records: int) -> list[Record]:
        """Up to ``max_records`` from the unpaused partitions, starting at a rotating one."""
        assigned = self._assigned or []
        records: list[Record] = []
        if not assigned:
            return records
        start = self._next_start % len(assigned)
        self._next_start += 1
        for tp in assigned[start:] + assigned[:start]:
            budget = max_records - len(records)
            if budget <= 0:
                break
            if tp in self._paused:
                continue
            position = self._positions[tp]
            batch = self._broker._partition(tp)[position : position + budget]
            self._positions[tp] = position + len(batch)
            records.extend(  # copies: a consumer may not change what other groups read
                Record(
                    r.topic, r.partition, r.offset, r.key, r.value, list(r.headers), r.timestamp_ms
                )
                for r in batch
            )
        return records


class MemoryProducer:
    """Appends to ``MemoryTransport`` at once; the returned future is already settled."""

    def __init__(self, broker: MemoryTransport, client_id: str) -> None:
        self.client_id = client_id
        self._broker = broker
        self._closed = False

    async def send(
        self, topic: str, key: bytes | None, value: bytes | None, headers: Headers
    ) -> asyncio.Future[None]:
        if self._closed:
            raise TransportError(f"producer {self.client_id} is closed (sending to {topic})")
        delivered: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        size = _size(key, value, headers)
        if size > self._broker.max_message_bytes:
            delivered.set_exception(
                TransportError(
                    f"record of {size} bytes for topic {topic} is larger than the "
                    f"{self._broker.max_message_bytes} bytes allowed"
                )
            )
        else:
            self._broker._append(topic, key, value, headers)
            delivered.set_result(None)
        return delivered

    async def flush(self) -> None:
        """Nothing buffered: every send is already delivered."""

    async def close(self) -> None:
        self._closed = True
