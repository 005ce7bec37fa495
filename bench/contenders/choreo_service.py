"""choreo itself: a ``choreo.Service`` with one sync handler run by ``ServiceRunner``.

The variant after the colon picks the transport (``choreo_service:confluent`` or
``choreo_service:aiokafka``; ``:confluent-eos`` adds ``ServiceConfig(exactly_once=True)``).
``run`` is bench/consume.py's ``run_choreo`` with the meter in a no-op handler: routing by
``ce_type``, the codec's cached reader, offsets committed every second, the DLQ path armed,
exactly as ``choreo run`` would run it. ``relay``'s handler passes ``ctx.emit`` the
``StockReserved`` that ``_common.reserve`` builds (choreo encodes it and sets the headers,
copying the correlation id); at least once, outputs are acknowledged before their input's offset
is committed (every second); exactly once, each commit interval is one transaction.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))


def run(args: Any, meter: Any) -> None:
    from services.events import OrderPlaced

    def handle(event: OrderPlaced, ctx: Any) -> bool:
        return bool(meter.seen())

    _serve(args, OrderPlaced, handle)


def relay(args: Any, meter: Any) -> None:
    from _common import reserve

    from services.events import OrderPlaced, ReservedLine, StockReserved

    def handle(event: OrderPlaced, ctx: Any) -> bool:
        ctx.emit(reserve(event, StockReserved, ReservedLine))
        return bool(meter.seen())

    _serve(args, OrderPlaced, handle)


def _serve(args: Any, model: Any, step: Any) -> None:
    """Run ``step`` as the service's handler for ``model`` until it returns True or SIGTERM."""
    from consume import bench_schemas

    import choreo
    from choreo._runtime.heap import tune_gc_for_serving
    from choreo._runtime.runner import ServiceRunner
    from choreo._schemas import Catalog
    from choreo._transport.registry import make_transport

    transport, _, guarantee = args.variant.partition("-")
    catalog = Catalog.load(bench_schemas(args.topic, args.sink))
    svc = choreo.Service(args.group)
    stop = asyncio.Event()

    @svc.on(model)
    def handle(event: Any, ctx: choreo.Context) -> None:
        if step(event, ctx):
            stop.set()

    async def main() -> None:
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        config = choreo.ServiceConfig(
            kafka=choreo.KafkaConfig(bootstrap_servers=args.bootstrap),
            transport=transport,
            create_topics=False,
            exactly_once=guarantee == "eos",
            instance_id=args.group,
        )
        runner = ServiceRunner(svc, config, make_transport(transport, config.kafka), catalog)
        await runner.start()
        tune_gc_for_serving()  # as choreo run does
        await runner.run(stop)

    asyncio.run(main())
