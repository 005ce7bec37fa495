"""choreo itself: a ``choreo.Service`` with a no-op sync handler run by ``ServiceRunner``.

The variant after the colon picks the transport (``choreo_service:confluent`` or
``choreo_service:aiokafka``). It is bench/consume.py's ``run_choreo`` with the meter in the
handler: routing by ``ce_type``, the codec's cached reader, offsets committed every second, the
DLQ path armed, exactly as ``choreo run`` would run it.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


def run(args: Any, meter: Any) -> None:
    sys.path.insert(0, str(ROOT))
    sys.path.insert(0, str(ROOT / "bench"))
    from consume import bench_schemas

    import choreo
    from choreo._runtime.runner import ServiceRunner
    from choreo._schemas import Catalog
    from choreo._transport.registry import make_transport
    from services.events import OrderPlaced

    catalog = Catalog.load(bench_schemas(args.topic))
    svc = choreo.Service(args.group)
    stop = asyncio.Event()

    @svc.on(OrderPlaced)
    def handle(event: OrderPlaced, ctx: choreo.Context) -> None:
        if meter.seen():
            stop.set()

    async def main() -> None:
        config = choreo.ServiceConfig(
            kafka=choreo.KafkaConfig(bootstrap_servers=args.bootstrap),
            transport=args.variant,
            create_topics=False,
        )
        runner = ServiceRunner(svc, config, make_transport(args.variant, config.kafka), catalog)
        await runner.start()
        await runner.run(stop)

    asyncio.run(main())
