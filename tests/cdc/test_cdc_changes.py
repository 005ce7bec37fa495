"""Row changes from a real PostgreSQL, through Debezium and Kafka, to an ``on_change`` handler."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from cdc_kit import CdcKit, eventually
from pydantic import BaseModel

import choreo
from choreo.cdc import CdcSource, Change

pytestmark = pytest.mark.stack


class Customer(BaseModel):
    id: int
    name: str
    email: str | None = None


def test_snapshot_then_inserts_updates_and_deletes_arrive_typed_and_in_order(cdc: CdcKit) -> None:
    customers = cdc.table("id int PRIMARY KEY, name text NOT NULL, email text")
    notes = cdc.table("id int PRIMARY KEY, body text")
    cdc.sql(
        f"INSERT INTO {customers} VALUES (1, 'Ada', 'ada@example.com'), (2, 'Bob', NULL)",
        f"INSERT INTO {notes} VALUES (1, 'existing')",
    )
    source = CdcSource(
        name=cdc.name("cdc"),
        database=cdc.database,
        tables=[customers, notes],
        snapshot_mode="initial",
    )
    svc = choreo.Service(cdc.name("mirror"))
    typed: list[tuple[float, Change[Customer]]] = []
    raw: list[Change[dict[str, Any]]] = []

    @svc.on_change(customers, source=source, model=Customer)
    async def on_customer(change: Change[Customer], ctx: choreo.Context) -> None:
        typed.append((time.monotonic(), change))

    @svc.on_change(notes, source=source)
    def on_note(change: Change[dict[str, Any]], ctx: choreo.Context) -> None:
        raw.append(change)

    async def scenario() -> list[float]:
        cdc.apply(source)
        async with cdc.running(svc, cdc.catalog()[0]):
            await eventually(lambda: len(typed) == 2 and len(raw) == 1, 30, "the snapshot")
            latencies = []
            for statement, count in (
                (f"INSERT INTO {customers} VALUES (3, 'Cy', 'cy@example.com')", 3),
                (f"UPDATE {customers} SET email = 'bob@example.com' WHERE id = 2", 4),
                (f"DELETE FROM {customers} WHERE id = 1", 5),
            ):
                began = time.monotonic()
                cdc.sql(statement)
                await eventually(lambda n=count: len(typed) == n, 15, statement)  # type: ignore[misc]
                latencies.append(typed[-1][0] - began)
            cdc.sql(
                f"ALTER TABLE {notes} ADD COLUMN pinned boolean DEFAULT false",
                f"INSERT INTO {notes} VALUES (2, 'after the change', true)",
            )
            await eventually(lambda: len(raw) == 2, 15, "the row with the added column")
            await asyncio.sleep(0.5)  # nothing more (e.g. the delete's tombstone) may arrive
        return latencies

    latencies = asyncio.run(scenario())
    print(
        f"\nchange latency commit -> handler: {', '.join(f'{s * 1000:.0f} ms' for s in latencies)}"
    )

    changes = [change for _, change in typed]
    assert [(c.op, c.source.snapshot) for c in changes] == [
        ("read", True),
        ("read", True),
        ("create", False),
        ("update", False),
        ("delete", False),
    ]
    assert {c.after.name for c in changes[:2] if c.after} == {"Ada", "Bob"}
    created, updated, deleted = changes[2:]
    assert created.before is None and created.after == Customer(
        id=3, name="Cy", email="cy@example.com"
    )
    assert updated.before == Customer(id=2, name="Bob", email=None)
    assert updated.after == Customer(id=2, name="Bob", email="bob@example.com")
    assert deleted.before == Customer(id=1, name="Ada", email="ada@example.com")
    assert deleted.after is None and deleted.key == {"id": 1}
    assert created.source.lsn is not None and updated.source.lsn is not None
    assert created.source.lsn < updated.source.lsn
    assert created.source.tx_id != updated.source.tx_id
    assert created.table == customers
    assert abs(created.source.ts_ms / 1000 - time.time()) < 120
    assert [n.row for n in raw] == [
        {"id": 1, "body": "existing"},
        {"id": 2, "body": "after the change", "pinned": True},
    ]
    assert max(latencies) < 5.0
