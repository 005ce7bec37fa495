"""FastStream: one ``@broker.subscriber`` handler on either of its Kafka brokers.

Variants: ``kafka`` (``faststream.kafka.KafkaBroker``, aiokafka underneath) and ``confluent``
(``faststream.confluent.KafkaBroker``, confluent-kafka underneath), each with FastStream's
default acknowledgement (``AckPolicy.ACK_FIRST``: the client's auto-commit, i.e. offsets may be
committed before the handler ran) or, with an ``-ack`` suffix, ``AckPolicy.ACK`` (commit after
the handler, which is choreo's at-least-once guarantee; FastStream awaits one commit per
message then). The handler takes the raw ``bytes`` body and decodes it itself, as the others do.

``relay`` (variants ``kafka-ack``, ``confluent-ack``: at least once needs ``AckPolicy.ACK``)
runs ``make_relay`` in the handler and awaits ``broker.publish(...)`` for the output with its
key and headers; the publish waits for the broker's acknowledgement (FastStream's default),
then the handler returns and FastStream commits the input. FastStream has no transactions, so
no exactly-once row.
"""

from __future__ import annotations

import asyncio
from typing import Any


def _broker(args: Any) -> tuple[Any, Any, str]:
    """The variant's broker class and ``AckPolicy``; FastStream imported in its own venv."""
    from faststream import AckPolicy

    client, _, policy = args.variant.partition("-")
    if client == "confluent":
        from faststream.confluent import KafkaBroker
    else:
        from faststream.kafka import KafkaBroker  # type: ignore[assignment]
    return KafkaBroker(args.bootstrap, logger=None), AckPolicy, policy


def run(args: Any, meter: Any) -> None:
    from _common import make_decoder

    broker, AckPolicy, policy = _broker(args)
    decode = make_decoder()
    finished = asyncio.Event()

    @broker.subscriber(
        args.topic,
        group_id=args.group,
        auto_offset_reset="earliest",
        ack_policy=AckPolicy.ACK if policy == "ack" else AckPolicy.ACK_FIRST,
    )
    async def handle(body: bytes) -> None:
        decode(body)
        if meter.seen():
            finished.set()

    _serve(broker, finished)


def relay(args: Any, meter: Any) -> None:
    from _common import make_relay

    broker, AckPolicy, policy = _broker(args)
    step = make_relay()
    finished = asyncio.Event()
    if args.variant.startswith("confluent"):
        from faststream.confluent.annotations import KafkaMessage
    else:
        from faststream.kafka.annotations import KafkaMessage  # type: ignore[assignment]

    @broker.subscriber(
        args.topic,
        group_id=args.group,
        auto_offset_reset="earliest",
        ack_policy=AckPolicy.ACK if policy == "ack" else AckPolicy.ACK_FIRST,
    )
    async def handle(body: bytes, message: KafkaMessage) -> None:
        key, value, headers = step(body, message.headers)
        out = {name: raw.decode() for name, raw in headers}  # FastStream's headers are str
        await broker.publish(value, args.sink, key=key, headers=out)
        if meter.seen():
            finished.set()

    _serve(broker, finished)


def _serve(broker: Any, finished: asyncio.Event) -> None:
    async def main() -> None:
        async with broker:
            await broker.start()
            await finished.wait()

    asyncio.run(main())
