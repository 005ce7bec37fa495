"""The seam between choreo's runtime and a Kafka client.

Everything above this module (decoding, handlers, retries, DLQ, tracing) is
written once against these protocols; a transport only moves bytes. One
conformance suite (``tests/conformance``) runs against every implementation,
the in-memory one included, so unit tests on it mean something.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple, Protocol

from choreo._errors import TransportError

Headers = list[tuple[str, bytes]]

WATERMARKS_TIMEOUT_S = 2.0
"""Budget of one ``Consumer.high_watermarks`` call: a metrics scrape must not hang on it."""


class TopicPartition(NamedTuple):
    topic: str
    partition: int


class Record:
    """A consumed record: the bytes plus where they came from.

    A plain slotted class rather than a dataclass: one is built per message on
    the hot path.
    """

    __slots__ = ("headers", "key", "offset", "partition", "timestamp_ms", "topic", "value")

    def __init__(
        self,
        topic: str,
        partition: int,
        offset: int,
        key: bytes | None,
        value: bytes | None,
        headers: Headers,
        timestamp_ms: int,
    ) -> None:
        self.topic = topic
        self.partition = partition
        self.offset = offset
        self.key = key
        self.value = value
        self.headers = headers
        self.timestamp_ms = timestamp_ms

    def header(self, name: str) -> bytes | None:
        """The last value of a header (Kafka allows repeats; the last one wins)."""
        for key, value in reversed(self.headers):
            if key == name:
                return value
        return None

    def __repr__(self) -> str:
        return f"Record({self.topic}[{self.partition}]@{self.offset}, key={self.key!r})"


@dataclass(frozen=True)
class TopicConfig:
    """What ``ensure_topics`` creates when a topic is missing."""

    name: str
    partitions: int = 1
    retention_ms: int | None = None
    compacted: bool = False
    replication_factor: int | None = None
    """None: the broker's ``default.replication.factor`` (3 on a replicated cluster)."""
    configs: tuple[tuple[str, str], ...] = ()
    """Further topic configs by Kafka's names, e.g. ``("min.insync.replicas", "2")``."""


@dataclass(frozen=True)
class Membership:
    """How a consumer belongs to its group (from ``ServiceConfig``; see "Scaling out").

    Every transport hands partitions out incrementally where its client can
    (a member joining or leaving moves only the partitions that change owner).
    """

    session_timeout_s: float = 10.0
    """Silence after which a crashed member's partitions move to the others."""
    static_id: str | None = None
    """``group.instance.id``: set, a restart within the session timeout takes the same
    partitions back without a rebalance, and a close does not leave the group."""

    @property
    def heartbeat_interval_s(self) -> float:
        """A third of the session timeout (at most 3 s): two heartbeats may be lost."""
        return min(3.0, self.session_timeout_s / 3)


PartitionsCallback = Callable[[list[TopicPartition]], Awaitable[None]]


class RebalanceListener(Protocol):
    """Called by the consumer, from inside ``poll``, around partition moves.

    ``on_revoked`` returns only once in-flight work for those partitions is
    finished or abandoned and their offsets are committed: after it returns,
    another member may own them.
    """

    async def on_assigned(self, partitions: list[TopicPartition]) -> None: ...

    async def on_revoked(self, partitions: list[TopicPartition]) -> None: ...


class Consumer(Protocol):
    """A group member with manual commits (auto-commit is always off)."""

    async def subscribe(self, topics: Sequence[str], listener: RebalanceListener) -> None: ...

    async def poll(self, max_records: int, timeout_s: float) -> list[Record]:
        """Up to ``max_records`` records, or fewer/none once ``timeout_s`` passed."""
        ...

    async def commit(self, offsets: Mapping[TopicPartition, int]) -> None:
        """Commit the next offset to read for each partition, synchronously."""
        ...

    def pause(self, partitions: Iterable[TopicPartition]) -> None: ...

    def resume(self, partitions: Iterable[TopicPartition]) -> None: ...

    def assignment(self) -> list[TopicPartition]: ...

    async def positions(self, partitions: Sequence[TopicPartition]) -> dict[TopicPartition, int]:
        """The offset each partition will be read from next, past transaction markers.

        Local (no broker round trip); a partition without a position yet is left out.
        Only meaningful between polls: it says where the last poll's records ended.
        """
        ...

    async def high_watermarks(
        self, partitions: Sequence[TopicPartition]
    ) -> dict[TopicPartition, int]:
        """The log end offset (next offset to be written) of each partition, from the broker.

        Read-only, for consumer-lag metrics; a partition the broker does not
        answer for within ``WATERMARKS_TIMEOUT_S`` is left out rather than raised.
        """
        ...

    async def close(self) -> None: ...


class Producer(Protocol):
    """Sends records; ``send`` resolves when the broker acknowledged the record."""

    async def send(
        self, topic: str, key: bytes | None, value: bytes | None, headers: Headers
    ) -> asyncio.Future[None]:
        """Enqueue a record; the returned awaitable resolves on delivery (raises on failure).

        Split in two so a caller can enqueue many records and await them
        together, without one broker round trip per record.
        """
        ...

    async def flush(self) -> None: ...

    async def close(self) -> None: ...


class TransactionalProducer(Producer, Protocol):
    """A producer whose sends and the consumer's offsets commit together (exactly-once).

    Between ``begin`` and ``commit`` every send belongs to one Kafka
    transaction; ``commit`` adds the offsets (with the consumer's group
    metadata, so a zombie member of an older generation is fenced) and
    commits. Readers with ``read_committed`` see all of it or none.
    """

    async def begin(self) -> None: ...

    async def commit(self, offsets: Mapping[TopicPartition, int], consumer: Consumer) -> None: ...

    async def abort(self) -> None: ...


class TransactionAborted(TransportError):
    """``commit`` could not commit and the transaction was aborted (a broker failure, the
    member dropped from its group): none of its records or offsets count. The caller
    handles the records since the last commit again in a new transaction; the service
    does not stop."""


class Transport(Protocol):
    """A factory for one client library's consumers, producers and admin calls."""

    name: str

    def consumer(
        self, group_id: str, client_id: str, membership: Membership | None = None
    ) -> Consumer: ...

    def producer(self, client_id: str) -> Producer: ...

    def transactional_producer(
        self, client_id: str, transactional_id: str
    ) -> TransactionalProducer:
        """Raise ``ConfigError`` if the client library cannot do transactions."""
        ...

    async def ensure_topics(self, topics: Sequence[TopicConfig]) -> None:
        """Create the missing topics; existing ones are left as they are."""
        ...

    async def check_reachable(self, timeout_s: float) -> None:
        """Raise ``TransportError`` naming the bootstrap servers if no broker answers."""
        ...

    async def group_members(self, group_id: str) -> list[str]:
        """Client ids of the group's current members (to catch two services in one group)."""
        ...
