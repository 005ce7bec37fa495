"""FastStream: one ``@broker.subscriber`` handler on either of its Kafka brokers.

Variants: ``kafka`` (``faststream.kafka.KafkaBroker``, aiokafka underneath) and ``confluent``
(``faststream.confluent.KafkaBroker``, confluent-kafka underneath), each with FastStream's
default acknowledgement (``AckPolicy.ACK_FIRST``: the client's auto-commit, i.e. offsets may be
committed before the handler ran) or, with an ``-ack`` suffix, ``AckPolicy.ACK`` (commit after
the handler, which is choreo's at-least-once guarantee; FastStream awaits one commit per
message then). The handler takes the raw ``bytes`` body and decodes it itself, as the others do.
"""

from __future__ import annotations

import asyncio
from typing import Any


def run(args: Any, meter: Any) -> None:
    from _common import make_decoder
    from faststream import AckPolicy

    client, _, policy = args.variant.partition("-")
    if client == "confluent":
        from faststream.confluent import KafkaBroker
    else:
        from faststream.kafka import KafkaBroker  # type: ignore[assignment]

    decode = make_decoder()
    broker = KafkaBroker(args.bootstrap, logger=None)
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

    async def main() -> None:
        async with broker:
            await broker.start()
            await finished.wait()

    asyncio.run(main())
