"""Saga state: an in-memory map per partition, backed by a compacted changelog topic.

The changelog is the truth; memory is a cache rebuilt from it when the tracker is given a
partition. Writes go through the tracker's transaction and reach memory only after it
committed, so the cache never holds a state the changelog lost in an aborted transaction.
Changelog partition *p* holds the sagas whose events arrive on input partition *p*.

Memory holds each state as the JSON written to the changelog, packed (``packing``: ~300
bytes where the JSON is ~2.5 KB and the parsed objects ~17 KB), and parses it (~25 us) only when
an event or a deadline for that saga arrives. Its timer's wake time is held in front of it
(:data:`WAKE`), so the timers find what is due without the states. No parsed states are
cached: in the bench's order saga a saga's next event comes thousands of other sagas' events
later (its steps' topics are read side by side), so a cache of 1,024 parsed states (~15 MB) got
29 hits in 40,000 reads; the events of one saga within one transaction already share one
parsed state (the tracker's batch).
"""

from __future__ import annotations

import logging
import math
import struct
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import confluent_kafka as ck
from confluent_kafka.admin import AdminClient

from choreo._errors import DecodeError, TransportError
from choreo._saga.packing import Packer
from choreo._saga.state import SagaState, UnreadableState
from choreo._transport.watermarks import latest_offsets, watermarks

_log = logging.getLogger("choreo.saga.store")

RESTORE_TIMEOUT_S = 60.0
READ_WAIT_S = 0.05
"""How long one ``consume`` call of a restore waits: it returns only once that passed or it has
its 1,000 records, so at 0.5 s a partition's last records (and its end) came half a second
late: with the broker's fetch wait, a restore of a handful of states took a second."""


def changelog_topic(saga: str) -> str:
    return f"choreo.saga.{saga}.state"


StateKey = tuple[int, str]
"""(partition, saga id)."""


WAKE = struct.Struct("<d")
"""Each held state starts with its timer's wake time, 8 bytes (NaN: none): the timers need no
float, tuple or dict entry of their own per saga (~100 bytes each at 100,000 open sagas)."""
UNARMED = WAKE.pack(math.nan)


class StateStore:
    """The committed states of the partitions this tracker owns, packed, each behind its wake
    time (:data:`WAKE`), which only :class:`~choreo._saga.timers.Timers` reads and sets."""

    def __init__(self) -> None:
        self._partitions: dict[int, dict[str, bytes]] = {}
        self._armed: dict[int, int] = {}
        self._packer = Packer()

    @property
    def partitions(self) -> set[int]:
        return set(self._partitions)

    def owns(self, partition: int) -> bool:
        return partition in self._partitions

    def get(self, partition: int, saga_id: str) -> SagaState | None:
        """A freshly parsed state: the caller may change it without touching the store.
        ``DecodeError`` (``unreadable-state``) when the changelog's record for the saga is not
        a state (a restore holds such a record as it is: it is the saga's latest)."""
        data = self._partitions[partition].get(saga_id)
        if data is None:
            return None
        return self.parse(saga_id, self._packer.unpack(memoryview(data)[WAKE.size :]))

    def unpack_many(self, keys: Iterable[StateKey]) -> dict[StateKey, bytes]:
        """The JSON of each state held among ``keys``, unpacked in one call (a tracker's batch:
        :meth:`Packer.unpack_many`), for :meth:`parse`."""
        held = []
        for partition, saga_id in keys:
            states = self._partitions.get(partition)
            data = None if states is None else states.get(saga_id)
            if data is not None:
                held.append(((partition, saga_id), memoryview(data)[WAKE.size :]))
        unpacked = self._packer.unpack_many([packed for _, packed in held])
        return {key: data for (key, _), data in zip(held, unpacked, strict=True)}

    def parse(self, saga_id: str, data: bytes) -> SagaState:
        """A held state's JSON (:meth:`unpack_many`) as :meth:`get` returns it."""
        try:
            return SagaState.from_bytes(data)
        except UnreadableState as exc:
            raise DecodeError(
                "unreadable-state",
                f"saga {saga_id}: its latest changelog record is not a saga state ({exc}); "
                "its events are dead-lettered until a valid state or a tombstone replaces it",
            ) from None

    def pack(self, data: bytes, wake_at: float | None = None) -> bytes:
        """A state's JSON as :meth:`load` takes it: restore packs each record as it reads it,
        with its wake time when it knows it (else the timers set it)."""
        return self._packer.pack(data, UNARMED if wake_at is None else WAKE.pack(wake_at))

    def load(self, partition: int, states: dict[str, bytes]) -> None:
        """Hold ``states``, made by :meth:`pack`, as the partition's."""
        self._partitions[partition] = states
        self._armed[partition] = sum(_wake(data) is not None for data in states.values())

    def drop(self, partition: int) -> None:
        self.take(partition)

    def take(self, partition: int) -> dict[str, bytes] | None:
        """The partition's states, no longer held (None when it was not): :meth:`load` holds
        them again."""
        self._armed.pop(partition, None)
        return self._partitions.pop(partition, None)

    def pack_bodies(self, changes: Mapping[StateKey, bytes | None]) -> dict[StateKey, bytes | None]:
        """The states' JSON packed, without wake times (the store keeps each saga's own), in
        one call: the tracker's commit thread packs a batch while its transaction is on its
        way, and :meth:`apply` takes them once committed. Touches nothing else of the store."""
        written = {key: data for key, data in changes.items() if data is not None}
        bodies: dict[StateKey, bytes | None] = dict.fromkeys(changes)
        bodies.update(zip(written, self._packer.pack_many(list(written.values())), strict=True))
        return bodies

    def apply(
        self,
        changes: Mapping[StateKey, bytes | None],
        bodies: Mapping[StateKey, bytes | None] | None = None,
        wakes: Mapping[StateKey, float | None] | None = None,
    ) -> list[tuple[StateKey, float | None, float | None]]:
        """Make committed changes visible: each state's JSON (None deletes), and ``bodies``,
        the same from :meth:`pack_bodies` when already packed. A changed state keeps its
        wake time, or takes the one ``wakes`` gives it (NaN: none); returns ``(key, was, at)``
        for each wake time that changed, for :meth:`Timers.moved`. A saga keeps the id object
        it was first held under, the one the timers hold too (a new key object per commit
        would leave them holding a copy of the id)."""
        if bodies is None:
            pack = self._packer.pack
            bodies = {key: None if data is None else pack(data) for key, data in changes.items()}
        wakes = wakes or {}
        moved: list[tuple[StateKey, float | None, float | None]] = []
        for key, body in bodies.items():
            partition, saga_id = key
            states = self._partitions.get(partition)
            if states is None:
                continue  # the partition moved away after the commit; its new owner restores
            old = states.get(saga_id)
            was = None if old is None else _wake(old)
            if body is None:
                if old is not None:
                    del states[saga_id]
                    self._armed[partition] -= was is not None
                continue
            if key not in wakes:
                states[saga_id] = (UNARMED if old is None else old[: WAKE.size]) + body
                continue
            at = due_time(wakes[key])
            states[saga_id] = (UNARMED if at is None else WAKE.pack(at)) + body
            if at != was:
                self._armed[partition] += (at is not None) - (was is not None)
                moved.append((key, was, at))
        return moved

    def hold_under(self, partition: int, saga_id: str) -> None:
        """Hold the saga under this id object, which the timers are about to list: a dict
        keeps the first key object it was given, and an equal id read from a later record
        would be a second copy in memory (~70-85 bytes)."""
        states = self._partitions[partition]
        states[saga_id] = states.pop(saga_id)

    def wake(self, partition: int, saga_id: str) -> float | None:
        """The saga's wake time; None when it has none or is not held."""
        states = self._partitions.get(partition)
        data = None if states is None else states.get(saga_id)
        return None if data is None else _wake(data)

    def set_wake(self, partition: int, saga_id: str, at: float | None) -> float | None:
        """Set the saga's wake time (None: none) and return the one it had; KeyError when
        the saga is not held (the timers' deadlines fired, or armed again after an abort)."""
        states = self._partitions[partition]
        data = states[saga_id]
        was = _wake(data)
        if was != at:
            self._armed[partition] += (at is not None) - (was is not None)
            states[saga_id] = (UNARMED if at is None else WAKE.pack(at)) + data[WAKE.size :]
        return was

    @property
    def armed(self) -> int:
        """How many held sagas have a wake time."""
        return sum(self._armed.values())

    def wakes(self, partition: int) -> Iterator[tuple[str, float]]:
        """The partition's sagas that have a wake time, with it: each id the object the store
        holds (the timers rebuild from these without copies of the ids)."""
        unpack = WAKE.unpack_from
        for saga_id, data in self._partitions.get(partition, {}).items():
            at: float = unpack(data)[0]
            if at == at:
                yield saga_id, at

    def items(self) -> Iterator[tuple[StateKey, bytes]]:
        """Every state held, as its JSON."""
        unpack = self._packer.unpack
        for partition, states in self._partitions.items():
            for saga_id, data in states.items():
                yield (partition, saga_id), unpack(memoryview(data)[WAKE.size :])


def due_time(at: float | None) -> float | None:
    """A wake time as the store holds it: NaN is never due, so none."""
    return None if at is None or at != at else at


def _wake(data: bytes) -> float | None:
    at: float = WAKE.unpack_from(data)[0]
    return None if at != at else at


def read_changelog(
    settings: Mapping[str, Any], topic: str, partitions: Iterable[int] | None = None
) -> dict[int, dict[str, SagaState]]:
    """The latest committed state per saga id, per partition (all partitions when None); a
    saga whose latest record is not a state is left out, with a log line."""
    found: dict[int, dict[str, SagaState]] = {}
    for partition, states in read_changelog_bytes(settings, topic, partitions).items():
        found[partition] = {}
        for saga_id, data in states.items():
            try:
                found[partition][saga_id] = SagaState.from_bytes(data)
            except UnreadableState as exc:
                _log.warning("%s[%d] %s: not a saga state (%s)", topic, partition, saga_id, exc)
    return found


def read_changelog_bytes(
    settings: Mapping[str, Any],
    topic: str,
    partitions: Iterable[int] | None = None,
    keep: Callable[[bytes], bytes] | None = None,
    resume: Mapping[int, tuple[int, dict[str, bytes]]] | None = None,
    settle_s: float = 0.0,
) -> dict[int, dict[str, bytes]]:
    """:func:`read_changelog`, each state left as its bytes, or as ``keep`` makes them from
    each record as it is read (so a restore never holds the whole changelog's JSON at once:
    freed, it would stay in the process's resident memory). A partition in ``resume``, as
    ``(offset, states)``, is read from that offset on, onto those states: the states a
    tracker held up to there.

    Reads with ``read_committed`` up to the end (the last stable offset), so states from
    transactions that were aborted, or are still open in a crashed tracker, are never seen.
    ``settle_s`` > 0 (a tracker taking partitions over): the transactions open on a partition
    as the read starts are waited for up to that long, and the states of those that commit
    are read too. A transaction's markers reach its partitions one by one, so the input
    offsets it committed can be readable (what the tracker waits for before it restores)
    while its changelog records are not yet: read only up to the stable offset, those states
    would be missed, and the inputs that made them never read again. A transaction still open
    after ``settle_s`` (most likely a crashed tracker's, which the broker aborts) is left out,
    with a log line.
    """
    consumer = ck.Consumer(
        {
            **settings,
            "group.id": f"choreo-saga-restore-{topic}",
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
            "enable.partition.eof": True,
            "auto.offset.reset": "earliest",
            # A reader to the end: the broker's default (500 ms) held a fetch that found a
            # partition with nothing new, and with it each restore's end.
            "fetch.wait.max.ms": 10,
        }
    )
    try:
        if partitions is None:
            metadata = consumer.list_topics(topic, timeout=15)
            found = metadata.topics.get(topic)
            if found is None or found.error is not None:
                return {}
            partitions = list(found.partitions)
        resume = resume or {}
        wanted = sorted(set(partitions) | set(resume))
        result = {p: resume[p][1] if p in resume else {} for p in wanted}
        start = {p: resume[p][0] if p in resume else ck.OFFSET_BEGINNING for p in wanted}
        written = _written_ends(settings, topic, wanted) if settle_s > 0 else {}
        pending: set[int] = set()
        for partition in wanted:
            low, high = watermarks(consumer, ck.TopicPartition(topic, partition))
            if start[partition] >= 0 and not low <= start[partition] <= high:
                # Records past the offset are gone, or the log is shorter than it was (a
                # truncation, a topic made anew): the held states are no base, read it all.
                result[partition], start[partition] = {}, ck.OFFSET_BEGINNING
            if max(high, written.get(partition, high)) > max(low, start[partition]):
                pending.add(partition)
        if not pending:
            return result
        consumer.assign([ck.TopicPartition(topic, p, start[p]) for p in sorted(pending)])
        began = time.monotonic()
        deadline, settled_by = began + RESTORE_TIMEOUT_S, began + settle_s
        open_at: set[int] = set()
        """Partitions read up to a transaction still open (their stable offset), no record
        since: a record means the stable offset moved, so the transaction ended."""
        given_up: set[int] = set()
        """Partitions whose open transaction was not waited out: none of its records are
        taken, even if it commits as the read ends (its states kept in part would be wrong)."""
        while pending:
            now = time.monotonic()
            if now > deadline:
                raise TransportError(
                    f"restoring saga state from {topic} partitions {sorted(pending)} took over "
                    f"{RESTORE_TIMEOUT_S:g}s"
                )
            if open_at and now > settled_by:
                _log.warning(
                    "%s partition(s) %s: a transaction open there since the restore began did "
                    "not end within %gs; restored without its states",
                    topic,
                    sorted(open_at),
                    settle_s,
                )
                pending -= open_at
                given_up |= open_at
                open_at.clear()
            for message in consumer.consume(1000, timeout=READ_WAIT_S):
                error = message.error()
                number = message.partition() or 0
                if error is not None:
                    if error.code() != ck.KafkaError._PARTITION_EOF:
                        _log.warning("reading %s: %s", topic, error.str())
                    elif number in pending:
                        end = written.get(number, -1)
                        if end < 0 or _position(consumer, topic, number) >= end:
                            pending.discard(number)
                            open_at.discard(number)
                        else:
                            open_at.add(number)
                    continue
                if number in given_up:
                    continue
                open_at.discard(number)
                key = message.key()
                if key is None:
                    continue
                states = result[number]
                value = message.value()
                if value is None:
                    states.pop(key.decode(), None)
                else:
                    states[key.decode()] = value if keep is None else keep(value)
        return result
    finally:
        consumer.close()


def _position(consumer: ck.Consumer, topic: str, partition: int) -> int:
    (found,) = consumer.position([ck.TopicPartition(topic, partition)])
    return int(found.offset)


def _written_ends(settings: Mapping[str, Any], topic: str, partitions: list[int]) -> dict[int, int]:
    """Each partition's end including records of transactions still open (the high watermark,
    where a ``read_committed`` client's end is the last stable offset); {} when the broker
    does not answer in time, so the read stops at the stable offsets as it always did."""
    wanted = [ck.TopicPartition(topic, p) for p in partitions]
    try:
        ends = latest_offsets(AdminClient(dict(settings)), wanted, committed=False, timeout_s=15)
        return {partition: end for (_, partition), end in ends.items()}
    except ck.KafkaException as exc:
        _log.warning("%s: the ends of its open transactions are unknown (%s)", topic, exc)
        return {}
