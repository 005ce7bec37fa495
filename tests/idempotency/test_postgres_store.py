"""The PostgreSQL idempotency store, on the real PostgreSQL: the same guarantees as SQLite's."""

from __future__ import annotations

import uuid

import psycopg
import pytest
from builders import placed

import choreo
from choreo import _headers
from choreo.testing import TestService
from services.events import OrderPlaced, StockReservationFailed

pytestmark = pytest.mark.stack


def test_a_redelivery_is_skipped_and_its_events_re_sent_with_a_shared_postgres_store(
    postgres: str,
) -> None:
    table = f"effects_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(postgres, autocommit=True) as conn:
        conn.execute(f"CREATE TABLE {table} (order_id TEXT)")
    store = choreo.PostgresIdempotency(postgres)
    svc = choreo.Service(f"once-pg-{uuid.uuid4().hex[:6]}", idempotency=store)
    calls: list[str] = []

    @svc.on(OrderPlaced, retry=choreo.RetryPolicy(initial_interval_s=0.001))
    def reserve(event: OrderPlaced, ctx: choreo.Context) -> None:
        calls.append(event.order_id)
        ctx.db.execute(f"INSERT INTO {table} VALUES (%s)", (event.order_id,))
        if len(calls) == 1:
            raise ConnectionError("first try fails: its insert must roll back")
        ctx.emit(
            StockReservationFailed(
                order_id=event.order_id, unavailable_skus=[], reason="t", failed_at=event.placed_at
            )
        )

    with TestService(svc, idempotency=svc.idempotency) as t:
        t.send(placed("o-1"))
        [first] = t.records("shop.orders")
        t.send_raw("shop.orders", first.value, key=first.key, headers=first.headers)
        emitted = [r for r in t.records("shop.inventory") if r.header(_headers.SOURCE)]
    with psycopg.connect(postgres) as conn:
        rows = conn.execute(f"SELECT count(*) FROM {table}").fetchone()
        conn.execute(f"DROP TABLE {table}")
    assert calls == ["o-1", "o-1"]  # a failed try, a good one, then the redelivery skipped
    assert rows == (1,)
    assert len(emitted) == 2 and emitted[0].header(_headers.ID) == emitted[1].header(_headers.ID)
