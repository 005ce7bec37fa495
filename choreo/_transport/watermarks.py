"""A partition's low and high watermarks, waited for while a fresh topic has no leader yet.

Right after a topic is created (a DLQ, a changelog, a ledger) the broker answers "not leader"
for a moment; every tool that reads a partition from its start to its end needs the same
patience, so it lives here once.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

import confluent_kafka as ck
from confluent_kafka import IsolationLevel
from confluent_kafka.admin import AdminClient, OffsetSpec  # type: ignore[attr-defined]

from choreo._errors import TransportError

LEADER_WAIT_S = 60.0


def watermarks(
    consumer: ck.Consumer, partition: ck.TopicPartition, timeout_s: float = 15.0
) -> tuple[int, int]:
    """``(low, high)``, retried on retriable errors for up to ``LEADER_WAIT_S``."""
    deadline = time.monotonic() + LEADER_WAIT_S
    while True:
        try:
            low, high = consumer.get_watermark_offsets(partition, timeout=timeout_s)
            return int(low), int(high)
        except ck.KafkaException as exc:
            error = exc.args[0] if exc.args else None
            retriable = isinstance(error, ck.KafkaError) and (
                error.retriable() or error.code() == ck.KafkaError.NOT_LEADER_FOR_PARTITION
            )
            if not retriable or time.monotonic() > deadline:
                raise TransportError(f"cannot read the end of {partition.topic}: {exc}") from None
            time.sleep(0.2)


def latest_offsets(
    admin: AdminClient,
    partitions: Iterable[ck.TopicPartition],
    *,
    committed: bool,
    timeout_s: float,
) -> dict[tuple[str, int], int]:
    """Each partition's end, all in one request: as a ``read_committed`` reader sees it (the
    last stable offset), or with ``committed=False`` including the records of transactions
    still open (the high watermark). ``KafkaException`` when the broker does not answer."""
    latest = OffsetSpec.latest()  # type: ignore[no-untyped-call]
    isolation = IsolationLevel.READ_COMMITTED if committed else IsolationLevel.READ_UNCOMMITTED
    futures = admin.list_offsets(
        {tp: latest for tp in partitions}, isolation_level=isolation, request_timeout=timeout_s
    )
    return {
        (tp.topic, tp.partition): int(future.result(timeout_s).offset)
        for tp, future in futures.items()
    }
