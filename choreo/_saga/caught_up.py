"""Which partitions the tracker has read far enough to act on a deadline: the gate before one.

Kafka orders events within a partition only. A step's success may sit unread on one input
topic while its deadline falls due, e.g. after a restart with a backlog on every topic; acting
then would treat an event already in Kafka as late. The inputs are co-partitioned by the saga
id, so partition *p* of every input topic holds all of a saga's events: a deadline of a saga on
*p* fires only once the consumer's position on *p* of every input topic has reached the end
that partition had when the deadline was first found due. That end is fixed then, so a busy
partition that never stops growing still lets its deadlines fire once the consumer is past it.
The consumer reads ``read_committed``, so the end is the last stable offset: a record in a
transaction still open then is not written yet, and counts from its commit.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence

import confluent_kafka as ck

from choreo._errors import TransportError
from choreo._transport.watermarks import watermarks

_log = logging.getLogger("choreo.saga")


class ReadGate:
    """Per partition, the end of every input topic to reach before deadlines there may fire."""

    def __init__(self, topics: Sequence[str]) -> None:
        self._topics = tuple(topics)
        self._targets: dict[int, dict[str, int]] = {}

    def ready(self, consumer: ck.Consumer, partitions: Iterable[int]) -> set[int]:
        """The ``partitions`` read up to their target (taken now for those without one).

        A partition the consumer has not fetched from since it was assigned has no position
        yet: its committed offset counts (none committed: the reading starts at the low
        watermark). When the broker cannot be asked, none is ready: a later tick tries again.
        """
        wanted = sorted(set(partitions))
        if not wanted:
            return set()
        try:
            for partition in wanted:
                if partition not in self._targets:
                    self._targets[partition] = {
                        topic: self._end(consumer, topic, partition)[1] for topic in self._topics
                    }
            reached = self._positions(consumer, wanted)
        except (ck.KafkaException, TransportError) as exc:
            _log.warning(
                "cannot tell whether partition(s) %s of %s were read far enough (%s): "
                "deadlines wait for the next tick",
                wanted,
                ", ".join(self._topics),
                exc,
            )
            return set()
        done = {
            p for p in wanted if all(reached[(t, p)] >= end for t, end in self._targets[p].items())
        }
        for partition in done:
            del self._targets[partition]
        return done

    def forget(self, partitions: Iterable[int]) -> None:
        """The partitions moved away: their targets no longer matter."""
        for partition in partitions:
            self._targets.pop(partition, None)

    def _end(self, consumer: ck.Consumer, topic: str, partition: int) -> tuple[int, int]:
        return watermarks(consumer, ck.TopicPartition(topic, partition), 10.0)

    def _positions(self, consumer: ck.Consumer, wanted: list[int]) -> dict[tuple[str, int], int]:
        """Where the consumer is on each (topic, partition)."""
        asked = [ck.TopicPartition(t, p) for p in wanted for t in self._topics]
        positions = {(tp.topic, tp.partition): tp.offset for tp in consumer.position(asked)}
        unknown = [ck.TopicPartition(t, p) for (t, p), offset in positions.items() if offset < 0]
        if unknown:
            for tp in consumer.committed(unknown, timeout=10):
                low = self._end(consumer, tp.topic, tp.partition)[0]
                positions[(tp.topic, tp.partition)] = max(tp.offset, low)
        return positions
