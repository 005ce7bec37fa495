"""The second scenario's contenders: consume an ``OrderPlaced``, emit one event, commit.

``python bench/contenders/relay.py VARIANT --bootstrap B --source T --sink U --schemas DIR
--group G`` runs until SIGTERM. Each input event's ``choreo_correlation_id`` holds the time it
was produced; choreo copies it onto what the handler emits and the raw loop copies it by hand,
so the harness's reader of the sink topic can compute end-to-end latency. Variants:

- ``raw``: confluent-kafka loop; per poll: decode and validate each record, encode and produce
  a ``StockReserved`` (with choreo's codec, the same fastavro writer), wait for the producer's
  acknowledgements, then commit (at least once, as choreo).
- ``choreo-confluent``, ``choreo-aiokafka``: a ``choreo.Service`` whose handler ``ctx.emit``\\ s
  the ``StockReserved``; ``choreo-eos`` the same with ``ServiceConfig(exactly_once=True)``.

Runs in choreo's venv only (it uses the generated models).
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
RESERVATION = uuid.UUID(int=1)


def reserved(event: Any) -> Any:
    """The one event emitted per input: the order's lines, reserved in one warehouse."""
    from services.events import ReservedLine, StockReserved

    return StockReserved(
        order_id=event.order_id,
        reservation_id=RESERVATION,
        items=[
            ReservedLine(sku=i.sku, quantity=i.quantity, warehouse="PAR-1") for i in event.items
        ],
        reserved_at=event.placed_at,
        expires_at=event.placed_at,
    )


def run_raw(args: argparse.Namespace) -> None:
    from _common import make_decoder
    from confluent_kafka import Consumer, Producer

    from choreo import _headers
    from choreo._schemas import Catalog, Codec
    from services.events import OrderPlaced

    decode = make_decoder(OrderPlaced)
    codec = Codec(Catalog.load(Path(args.schemas)))
    consumer = Consumer(
        {
            "bootstrap.servers": args.bootstrap,
            "group.id": args.group,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    producer = Producer({"bootstrap.servers": args.bootstrap, "linger.ms": 5})
    consumer.subscribe([args.source])
    running = [True]
    signal.signal(signal.SIGTERM, lambda *_: running.clear())
    while running:
        messages = consumer.consume(500, 0.05)
        for message in messages:
            if message.error() is not None:
                continue
            out = reserved(decode(message.value()))
            correlation = dict(message.headers() or [])[_headers.CORRELATION].decode()
            headers = _headers.event_headers(
                b"shop.inventory.StockReserved", b"raw", str(uuid.uuid4()), correlation, None
            )
            producer.produce(args.sink, codec.encode(out), out.order_id.encode(), headers=headers)
        if messages:
            producer.flush()
            consumer.commit(asynchronous=True)
    consumer.close()


def run_choreo(args: argparse.Namespace, transport: str, exactly_once: bool) -> None:
    import choreo
    from choreo._runtime.runner import ServiceRunner
    from choreo._schemas import Catalog
    from choreo._transport.registry import make_transport
    from services.events import OrderPlaced

    catalog = Catalog.load(Path(args.schemas))
    svc = choreo.Service(args.group)

    @svc.on(OrderPlaced)
    def relay(event: OrderPlaced, ctx: choreo.Context) -> None:
        ctx.emit(reserved(event))

    async def main() -> None:
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        config = choreo.ServiceConfig(
            kafka=choreo.KafkaConfig(bootstrap_servers=args.bootstrap),
            transport=transport,  # type: ignore[arg-type]
            create_topics=False,
            exactly_once=exactly_once,
            instance_id=args.group,
        )
        runner = ServiceRunner(svc, config, make_transport(transport, config.kafka), catalog)
        await runner.start()
        await runner.run(stop)

    asyncio.run(main())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument(
        "variant", choices=["raw", "choreo-confluent", "choreo-aiokafka", "choreo-eos"]
    )
    for name in ("--bootstrap", "--source", "--sink", "--schemas", "--group"):
        parser.add_argument(name, required=True)
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    if args.variant == "raw":
        run_raw(args)
    elif args.variant == "choreo-eos":
        run_choreo(args, "confluent", exactly_once=True)
    else:
        run_choreo(args, args.variant.split("-", 1)[1], exactly_once=False)


if __name__ == "__main__":
    main()
