"""Which partitions the tracker has read to their end, right now: the gate before a deadline.

Kafka orders events within a partition only. A step's success may sit unread on one input
topic while its deadline falls due, e.g. after a restart with a backlog on every topic; acting
then would treat an event already in Kafka as late. The inputs are co-partitioned by the saga
id, so partition *p* of every input topic holds all of a saga's events: a deadline of a saga on
*p* fires only once the consumer's position on *p* of every input topic has reached that
partition's end as the broker reports it at that moment. The consumer reads ``read_committed``,
so that end is the last stable offset: a record in a transaction still open then is not
written yet, and counts from its commit.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence

import confluent_kafka as ck

from choreo._errors import TransportError
from choreo._transport.watermarks import watermarks

_log = logging.getLogger("choreo.saga")


def read_to_end(
    consumer: ck.Consumer, topics: Sequence[str], partitions: Iterable[int]
) -> set[int]:
    """The ``partitions`` whose every input topic the consumer has read up to its end.

    A partition the consumer has not fetched from since it was assigned has no position yet:
    its committed offset counts (none committed: the reading starts at the low watermark).
    When the broker cannot be asked, no partition counts: the deadlines wait for a later tick.
    """
    wanted = sorted(set(partitions))
    if not wanted:
        return set()
    try:
        positions = consumer.position([ck.TopicPartition(t, p) for p in wanted for t in topics])
        unknown = [ck.TopicPartition(tp.topic, tp.partition) for tp in positions if tp.offset < 0]
        committed = {
            (tp.topic, tp.partition): tp.offset
            for tp in (consumer.committed(unknown, timeout=10) if unknown else [])
        }
        behind: set[int] = set()
        for tp in positions:
            offset = tp.offset if tp.offset >= 0 else committed.get((tp.topic, tp.partition), -1)
            low, high = watermarks(consumer, ck.TopicPartition(tp.topic, tp.partition), 10.0)
            if max(offset, low) < high:
                behind.add(tp.partition)
    except (ck.KafkaException, TransportError) as exc:
        _log.warning(
            "cannot tell whether partition(s) %s of %s were read to the end (%s): deadlines "
            "wait for the next tick",
            wanted,
            ", ".join(topics),
            exc,
        )
        return set()
    return set(wanted) - behind
