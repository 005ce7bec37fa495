"""Redelivered events: side effects happen once; their emitted events are re-sent as they were."""

from __future__ import annotations

from pathlib import Path

from builders import placed

import choreo
from choreo import _headers
from choreo._runtime.idempotency import SqliteIdempotency
from choreo.testing import TestService
from services.events import OrderPlaced, StockReservationFailed


def _service(
    store: SqliteIdempotency, calls: list[str], fail_first: bool = False
) -> choreo.Service:
    svc = choreo.Service(
        "once", idempotency=store, retry=choreo.RetryPolicy(initial_interval_s=0.001)
    )

    @svc.on(OrderPlaced)
    def reserve(event: OrderPlaced, ctx: choreo.Context) -> None:
        calls.append(event.order_id)
        ctx.db.execute("CREATE TABLE IF NOT EXISTS effects (order_id TEXT)")
        ctx.db.execute("INSERT INTO effects VALUES (?)", (event.order_id,))
        if fail_first and ctx.attempt == 1:
            raise ConnectionError("flaky")
        ctx.emit(
            StockReservationFailed(
                order_id=event.order_id,
                unavailable_skus=[],
                reason="test",
                failed_at=event.placed_at,
            )
        )

    return svc


def test_a_redelivered_event_runs_once_and_re_sends_the_same_events(tmp_path: Path) -> None:
    store = SqliteIdempotency(tmp_path / "once.db")
    calls: list[str] = []
    with TestService(_service(store, calls), idempotency=store) as t:
        t.send(placed("o-1"))
        [first] = t.records("shop.orders")
        t.send_raw("shop.orders", first.value, key=first.key, headers=first.headers)  # redelivery
        emitted = [r for r in t.records("shop.inventory") if r.header(_headers.SOURCE) == b"once"]
    assert calls == ["o-1"]
    assert len(emitted) == 2
    assert emitted[0].header(_headers.ID) == emitted[1].header(_headers.ID)
    assert emitted[0].value == emitted[1].value
    rows = store._connection.execute("SELECT count(*) FROM effects").fetchone()
    assert rows == (1,)


def test_a_failed_try_rolls_its_side_effects_back(tmp_path: Path) -> None:
    store = SqliteIdempotency(tmp_path / "once.db")
    calls: list[str] = []
    with TestService(_service(store, calls, fail_first=True), idempotency=store) as t:
        t.send(placed("o-2"))
        [emitted] = t.emitted(StockReservationFailed)
    assert calls == ["o-2", "o-2"]  # tried twice
    assert store._connection.execute("SELECT count(*) FROM effects").fetchone() == (1,)
    assert emitted.order_id == "o-2"


def test_different_events_with_the_same_payload_both_run(tmp_path: Path) -> None:
    store = SqliteIdempotency(tmp_path / "once.db")
    calls: list[str] = []
    with TestService(_service(store, calls), idempotency=store) as t:
        t.send(placed("o-3"))
        t.send(placed("o-3"))  # a new event id: a new fact, not a redelivery
    assert calls == ["o-3", "o-3"]
