"""Kafka Connect killed with SIGKILL while the outbox relay streams: nothing committed is lost.

Connect flushes source offsets every second (``offset.flush.interval.ms``),
so after a crash the relay resumes from the last flushed LSN and publishes
again what followed: duplicates with the same ``ce_id``. choreo has no
idempotency store yet, so the handler here dedupes by event id itself, as a
handler with side effects must.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections import Counter
from pathlib import Path

import psycopg
import pytest
from builders import placed
from cdc_kit import CdcKit, eventually

import choreo
from choreo._dev import local_stack
from choreo.outbox import Outbox, OutboxRelay, outbox_ddl
from services.events import OrderPlaced

pytestmark = pytest.mark.stack

EVENTS = 600
KILL_AFTER = 250
"""Relayed events before the kill (over ~2 s, so Connect has flushed offsets by then);
the writer goes on committing while Connect is down and restarting."""


def connect_pid() -> int:
    stack = local_stack()
    [component] = [c for c in stack.components if c.name == "connect"]
    pid = stack.pid(component)
    if pid is None:
        pytest.skip("Kafka Connect is not run by this project's local stack (docker?)")
    return pid


def test_a_connect_crash_loses_no_committed_event(cdc: CdcKit) -> None:
    connect_pid()  # skip early when Connect is not ours to kill
    catalog, _ = cdc.catalog(partitions=3)
    table = f"public.{cdc.name('outbox')}"
    cdc.tables.append(table.split(".")[1])
    cdc.sql(outbox_ddl(table))
    relay = OutboxRelay(name=cdc.name("relay"), database=cdc.database, table=table)
    outbox = Outbox(catalog, source="orders-api", table=table)
    svc = choreo.Service(cdc.name("fulfilment"))
    deliveries: Counter[str] = Counter()
    fulfilled: list[str] = []

    @svc.on(OrderPlaced)
    def fulfil(event: OrderPlaced, ctx: choreo.Context) -> None:
        event_id = ctx.event_id
        assert event_id is not None
        deliveries[event_id] += 1
        if deliveries[event_id] == 1:  # dedupe by event id: side effects happen once
            fulfilled.append(event_id)

    committed: list[str] = []
    restart_s: list[float] = []

    async def write() -> None:
        async with await psycopg.AsyncConnection.connect(cdc.dsn) as conn:
            for seq in range(EVENTS):
                async with conn.transaction():
                    event = placed(f"o-{seq % 20}", sku=f"SKU-{seq}")
                    committed.append(await outbox.write_async(conn, event))
                await asyncio.sleep(0.006)  # a steady stream, ~120 events/s

    def kill_and_restart() -> None:
        pid = connect_pid()
        os.kill(pid, signal.SIGKILL)
        began = time.monotonic()
        # Until the kernel has reaped it, the stack would take the dying JVM for a live one.
        while Path(f"/proc/{pid}").exists() and time.monotonic() - began < 30:
            time.sleep(0.05)
        local_stack().up()
        restart_s.append(time.monotonic() - began)

    async def scenario() -> None:
        async with cdc.running(svc, catalog):
            cdc.apply(relay)
            writing = asyncio.create_task(write())
            await eventually(lambda: len(fulfilled) >= KILL_AFTER, 30, "the stream flowing")
            await asyncio.to_thread(kill_and_restart)
            await writing
            cdc.connect.wait_running(relay.name, 90)
            await eventually(lambda: len(fulfilled) == EVENTS, 90, "every committed event")
            await asyncio.sleep(1.0)

    asyncio.run(scenario())
    redelivered = sum(n - 1 for n in deliveries.values())
    print(
        f"\nconnect crash: {EVENTS} committed, {len(fulfilled)} fulfilled once, "
        f"{redelivered} redelivered (deduped), Connect back in {restart_s[0]:.1f}s"
    )
    assert sorted(fulfilled) == sorted(committed)
    assert set(deliveries) == set(committed)
