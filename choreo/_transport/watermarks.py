"""A partition's low and high watermarks, waited for while a fresh topic has no leader yet.

Right after a topic is created (a DLQ, a changelog, a ledger) the broker answers "not leader"
for a moment; every tool that reads a partition from its start to its end needs the same
patience, so it lives here once.
"""

from __future__ import annotations

import time

import confluent_kafka as ck

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
