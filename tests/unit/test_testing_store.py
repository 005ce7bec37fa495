"""TestService runs a database-backed service without its database, unless asked for it."""

from __future__ import annotations

from pathlib import Path

import pytest
from builders import placed, reserved

import choreo
from choreo._runtime.dispatch import HandlerFailed
from choreo.testing import TestService
from services.events import OrderPlaced, StockReserved

UNREACHABLE = "postgresql://nobody:secret@127.0.0.1:1/none"
"""A DSN nothing answers at: any use of the real store would fail the test."""


def _reserver(calls: list[str], *, uses_db: bool = False) -> choreo.Service:
    svc = choreo.Service("reserver", idempotency=choreo.PostgresIdempotency(UNREACHABLE))

    @svc.on(OrderPlaced)
    def reserve(event: OrderPlaced, ctx: choreo.Context) -> None:
        calls.append(event.order_id)
        if uses_db:
            ctx.db.execute("INSERT INTO reservations VALUES (%s)", (event.order_id,))
        ctx.emit(reserved(event.order_id))

    return svc


def test_a_postgres_backed_service_runs_and_deduplicates_with_no_database() -> None:
    calls: list[str] = []
    svc = _reserver(calls)
    with TestService(svc) as t:
        t.send(placed("o-1"))
        [record] = t.records(t.catalog.topic_of(OrderPlaced.event_type).name)
        t.send_raw(record.topic, record.value, key=record.key, headers=record.headers)
        assert calls == ["o-1"]  # the redelivery did not run the handler again
        emitted = t.records(t.catalog.topic_of(StockReserved.event_type).name)
        assert len(emitted) == 2 and emitted[0].headers == emitted[1].headers  # same ce_id
    assert isinstance(svc.idempotency, choreo.PostgresIdempotency)  # the service is untouched


def test_a_handler_writing_through_ctx_db_is_told_how_to_get_a_database() -> None:
    with (
        pytest.raises(HandlerFailed, match=r"ctx\.db\.execute: .* idempotency=svc\.idempotency"),
        TestService(_reserver([], uses_db=True)) as t,
    ):
        t.send(placed("o-2"))


def test_the_test_can_ask_for_a_real_store(tmp_path: Path) -> None:
    store = choreo.SqliteIdempotency(tmp_path / "handled.sqlite")
    calls: list[str] = []
    with TestService(_reserver(calls), idempotency=store) as t:
        t.send(placed("o-3"))
    with TestService(_reserver(calls), idempotency=store) as t:  # a restart: same store
        t.send(placed("o-3"))
    assert calls == ["o-3", "o-3"]  # two sends are two events (two ids), both handled
    rows = store._connection.execute("SELECT count(*) FROM choreo_processed").fetchone()
    assert rows == (2,)
