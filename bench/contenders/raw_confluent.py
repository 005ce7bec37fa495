"""The floor: a hand-written confluent-kafka loop, as bench/consume.py's ``run_raw``.

``run``: ``consume(500)``, decode and validate each record into choreo's generated model, a
no-op handler, one async commit per poll, a final sync commit. ``relay``: per ``consume(500)``
(returning as soon as one record is there), ``make_relay`` each record and produce the output;
then at least once (no variant): ``flush()`` and an async commit; exactly once (``:eos``): the
whole poll is one transaction (``send_offsets_to_transaction`` + ``commit_transaction``);
``:eos-1s``: one transaction per second of polls, choreo's default ``commit_interval_s``. Runs
in choreo's venv (for the generated models).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


def run(args: Any, meter: Any) -> None:
    sys.path.insert(0, str(ROOT))
    from _common import make_decoder
    from confluent_kafka import Consumer, KafkaError, KafkaException

    from services.events import OrderPlaced

    decode = make_decoder(OrderPlaced)
    consumer = Consumer(
        {
            "bootstrap.servers": args.bootstrap,
            "group.id": args.group,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([args.topic])
    done = False
    while not done:
        messages = consumer.consume(500, 1.0)
        for message in messages:
            if message.error() is None:
                handle(decode(message.value()))
                done = meter.seen()
        if messages:
            consumer.commit(asynchronous=True)
    try:
        consumer.commit(asynchronous=False)
    except KafkaException as exc:  # the last async commit may already have taken them all
        if exc.args[0].code() != KafkaError._NO_OFFSET:
            raise
    consumer.close()


def relay(args: Any, meter: Any) -> None:
    sys.path.insert(0, str(ROOT))
    from _common import make_relay
    from confluent_kafka import Consumer, Producer, TopicPartition

    from services.events import OrderPlaced, ReservedLine, StockReserved

    step = make_relay(OrderPlaced, StockReserved, ReservedLine)
    eos = args.variant.startswith("eos")
    # eos: a transaction per poll; eos-1s: one per second, as choreo's commit_interval_s.
    interval_s = 1.0 if args.variant == "eos-1s" else 0.0
    consumer = Consumer(
        {
            "bootstrap.servers": args.bootstrap,
            "group.id": args.group,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
        }
    )
    settings = {"bootstrap.servers": args.bootstrap, "linger.ms": 5, "acks": "all"}
    if eos:
        settings["transactional.id"] = f"{args.group}-tx"
    producer = Producer(settings)
    if eos:
        producer.init_transactions(30)
    consumer.subscribe([args.topic])
    done = False
    began: float | None = None  # the open transaction's start
    ends: dict[tuple[str, int], int] = {}
    while not done:
        messages = _batch(consumer)
        if eos and messages and began is None:
            producer.begin_transaction()
            began = time.monotonic()
        for message in messages:
            if message.error() is not None:
                continue
            key, value, headers = step(message.value(), message.headers())
            while True:
                try:
                    producer.produce(args.sink, value, key, headers=headers)
                    break
                except BufferError:
                    producer.poll(0.05)
            producer.poll(0)
            ends[message.topic(), message.partition()] = message.offset() + 1
            done = meter.seen() or done
        if eos and began is not None and (done or time.monotonic() - began >= interval_s):
            offsets = [TopicPartition(t, p, o) for (t, p), o in ends.items()]
            producer.send_offsets_to_transaction(offsets, consumer.consumer_group_metadata(), 30)
            producer.commit_transaction(30)
            began, ends = None, {}
        elif not eos and messages:
            producer.flush(30)
            consumer.commit(asynchronous=True)
    consumer.close()


def _batch(consumer: Any) -> list[Any]:
    """Up to 500 buffered messages, or wait up to 0.1 s for the first (as choreo's poll)."""
    messages: list[Any] = consumer.consume(500, 0)
    if not messages:
        messages = consumer.consume(1, 0.1)
        if messages:
            messages.extend(consumer.consume(499, 0))
    return messages


def handle(event: Any) -> None:
    """The no-op handler every contender calls."""
