"""The floor: a hand-written confluent-kafka loop, as bench/consume.py's ``run_raw``.

``consume(500)``, decode and validate each record into choreo's generated model, a no-op
handler, one async commit per poll, a final sync commit. Runs in choreo's venv (for the model).
"""

from __future__ import annotations

import sys
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


def handle(event: Any) -> None:
    """The no-op handler every contender calls."""
