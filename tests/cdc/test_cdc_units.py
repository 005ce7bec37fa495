"""CDC and outbox pieces, nearly all without the stack: decoding, handler wiring, connector
configs, rows, the Connect client (whose wait one stack-marked test checks on the real Connect)."""

from __future__ import annotations

import json
import socket
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from builders import placed
from pydantic import BaseModel

import choreo
from choreo._cli.main import main
from choreo._runtime import dead_letters as dlq
from choreo._schemas import Catalog, Codec
from choreo._transport.base import Record
from choreo.cdc import CdcSource, Change, ConnectClient, Postgres, change_decoder, mapper
from choreo.outbox import Outbox, OutboxRelay, outbox_ddl
from choreo.testing import TestService
from services.events import CancellationReason, OrderCancelled

DB = Postgres(host="db", port=5433, dbname="shop", user="cdc", password="s3cret")
SOURCE = CdcSource(name="shop-orders", database=DB, tables=["public.orders"], topic_prefix="shop")
TOPIC = "shop.public.orders"


def envelope(op: str, before: dict[str, Any] | None, after: dict[str, Any] | None) -> bytes:
    """A change event as Debezium 3.7 writes it with the JSON converter, schemas off."""
    source = {
        "version": "3.7.0.Final",
        "connector": "postgresql",
        "name": "shop",
        "ts_ms": 1795305523361,
        "snapshot": "false" if op != "r" else "last",
        "db": "shop",
        "sequence": '[null,"26806640"]',
        "schema": "public",
        "table": "orders",
        "txId": 742,
        "lsn": 26806640,
        "xmin": None,
    }
    body = {"before": before, "after": after, "source": source, "op": op, "ts_ms": 1795305523632}
    return json.dumps(body).encode()


def record(value: bytes | None, key: bytes | None = b'{"id":"o-1"}') -> Record:
    return Record(TOPIC, 0, 7, key, value, [], 0)


class Order(BaseModel):
    id: str
    status: str


# --- decoding ------------------------------------------------------------------------------


def test_an_update_decodes_to_a_typed_change_with_its_source() -> None:
    decode = change_decoder()
    change = decode(
        record(envelope("u", {"id": "o-1", "status": "new"}, {"id": "o-1", "status": "paid"}))
    )
    assert change is not None
    assert (change.op, change.before, change.after) == (
        "update",
        {"id": "o-1", "status": "new"},
        {"id": "o-1", "status": "paid"},
    )
    assert change.key == {"id": "o-1"}
    assert change.table == "public.orders"
    assert (change.source.lsn, change.source.tx_id, change.source.snapshot) == (
        26806640,
        742,
        False,
    )
    assert change.source.committed_at == datetime.fromtimestamp(1795305523.361, UTC)


def test_snapshot_rows_are_reads_and_deletes_expose_the_old_row() -> None:
    decode = change_decoder()
    read = decode(record(envelope("r", None, {"id": "o-1", "status": "new"})))
    gone = decode(record(envelope("d", {"id": "o-1", "status": "paid"}, None)))
    assert read is not None and gone is not None
    assert (read.op, read.source.snapshot, read.row) == (
        "read",
        True,
        {"id": "o-1", "status": "new"},
    )
    assert (gone.op, gone.row) == ("delete", {"id": "o-1", "status": "paid"})


def test_rows_validate_into_the_model_and_added_columns_are_ignored_by_it() -> None:
    decode = change_decoder(Order)
    change = decode(record(envelope("c", None, {"id": "o-1", "status": "new", "added": 1})))
    assert change is not None and change.after == Order(id="o-1", status="new")


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (b"\xff\x01 not json", "not-json"),
        (b"\x00\x00\x00\x00\x07{}", "registry-framed"),  # Avro changes, and no registry given
        (b"\x00\x00\x07", "not-avro"),  # a zero byte and less than a registry header
        (b'{"hello": "world"}', "not-debezium"),
        (b"[1, 2]", "not-debezium"),
        (
            envelope("c", None, None).replace(b'"table": "orders"', b'"tbl": "orders"'),
            "not-debezium",
        ),
        (envelope("c", None, {"id": "o-1"}), "invalid"),
    ],
)
def test_what_is_not_a_change_is_refused_with_a_reason(value: bytes, reason: str) -> None:
    with pytest.raises(choreo.DecodeError) as refused:
        change_decoder(Order)(record(value))
    assert refused.value.reason == reason


def test_a_tombstone_decodes_to_none() -> None:
    assert change_decoder()(record(None)) is None


# --- through the runtime (in memory) -------------------------------------------------------


def test_changes_reach_the_handler_tombstones_do_not_and_poison_is_dead_lettered() -> None:
    svc = choreo.Service("order-mirror")
    seen: list[Change[Order]] = []

    @svc.on_change("public.orders", source=SOURCE, model=Order)
    async def mirror(change: Change[Order], ctx: choreo.Context) -> None:
        seen.append(change)

    with TestService(svc, raise_errors=False) as t:
        t.send_raw(TOPIC, envelope("c", None, {"id": "o-1", "status": "new"}), key=b'{"id":"o-1"}')
        t.send_raw(TOPIC, envelope("d", {"id": "o-1", "status": "new"}, None), key=b'{"id":"o-1"}')
        t.send_raw(TOPIC, None, key=b'{"id":"o-1"}')
        t.send_raw(TOPIC, b"garbage", key=b'{"id":"o-2"}')
        t.send_raw(TOPIC, envelope("c", None, {"id": "o-3", "status": "new"}), key=b'{"id":"o-3"}')
        [parked] = t.dead_letters(TOPIC)
    assert [(c.op, c.row.id) for c in seen] == [
        ("create", "o-1"),
        ("delete", "o-1"),
        ("create", "o-3"),
    ]
    assert parked.header(dlq.REASON) == b"not-json"
    assert parked.value == b"garbage"


def test_batched_changes_come_as_lists_without_tombstones_and_rejects_are_dead_lettered() -> None:
    svc = choreo.Service("order-loader")
    batches: list[list[tuple[str, str]]] = []

    @svc.on_change("public.orders", source=SOURCE, model=Order, max_size=3, max_wait_s=0.05)
    def load(changes: list[Change[Order]], ctx: choreo.BatchContext) -> None:
        batches.append([(c.op, c.row.id) for c in changes])
        for change in changes:
            if change.row.status == "bad":
                ctx.reject(change, ValueError(f"status of {change.row.id} is bad"))

    with TestService(svc) as t:  # a rejection is a decision, not a handler error: it parks
        for op, row, key in (
            ("c", {"id": "o-1", "status": "new"}, b'{"id":"o-1"}'),
            ("c", {"id": "o-2", "status": "bad"}, b'{"id":"o-2"}'),
            (None, None, b'{"id":"o-9"}'),
            ("c", {"id": "o-3", "status": "new"}, b'{"id":"o-3"}'),
            ("d", {"id": "o-1", "status": "new"}, b'{"id":"o-1"}'),
        ):
            value = (
                None if op is None else envelope(op, *((row, None) if op == "d" else (None, row)))
            )
            t.send_raw(TOPIC, value, key=key, settle=False)
        t.settle()
        [parked] = t.dead_letters(TOPIC)
    assert batches == [
        [("create", "o-1"), ("create", "o-2")],
        [("create", "o-3"), ("delete", "o-1")],
    ]
    assert parked.key == b'{"id":"o-2"}'
    assert parked.header(dlq.REASON) == b"rejected"
    assert parked.header(dlq.ERROR_TYPE) == b"builtins.ValueError"
    assert parked.header(dlq.ERROR_MESSAGE) == b"status of o-2 is bad"


def test_only_an_element_of_the_batch_can_be_rejected() -> None:
    ctx = choreo.BatchContext("loader", [(record(b"{}"), Order(id="o-1", status="new"))])
    with pytest.raises(ValueError, match="element of this batch"):
        ctx.reject(Order(id="o-1", status="new"), ValueError("bad"))


def test_a_mapper_turns_a_change_into_a_domain_event_to_emit() -> None:
    svc = choreo.Service("order-events")
    to_cancelled = mapper(
        OrderCancelled,
        rename={"id": "order_id", "note": "detail"},
        extra=lambda change: {
            "reason": CancellationReason.OTHER,
            "cancelled_at": change.source.committed_at,
        },
    )

    @svc.on_change("public.orders", source=SOURCE)
    def publish(change: Change[dict[str, Any]], ctx: choreo.Context) -> None:
        if change.op == "update" and change.row["status"] == "cancelled":
            ctx.emit(to_cancelled(change))

    before = {"id": "o-7", "status": "new", "note": None, "warehouse": "w-1"}
    after = {**before, "status": "cancelled", "note": "customer asked"}
    with TestService(svc) as t:
        t.send_raw(TOPIC, envelope("u", before, after), key=b'{"id":"o-7"}')
        [event] = t.emitted(OrderCancelled)
    assert event.order_id == "o-7"
    assert event.detail == "customer asked"
    assert event.cancelled_at == datetime.fromtimestamp(1795305523.361, UTC)


def test_on_change_refuses_a_table_the_source_does_not_capture() -> None:
    svc = choreo.Service("typo")
    with pytest.raises(choreo.TopologyError, match=r"does not capture 'public\.order'"):
        svc.on_change("public.order", source=SOURCE)


# --- connector configs ---------------------------------------------------------------------


def test_a_cdc_source_config_names_its_slot_publication_and_tables() -> None:
    config = SOURCE.connector_config()
    assert config["plugin.name"] == "pgoutput"
    assert config["publication.autocreate.mode"] == "filtered"
    assert config["table.include.list"] == r"public\.orders"
    assert (config["slot.name"], config["publication.name"]) == ("shop_orders", "shop_orders")
    assert (config["topic.prefix"], config["snapshot.mode"]) == ("shop", "initial")
    assert config["database.hostname"] == "db" and config["database.port"] == "5433"
    assert config["value.converter.schemas.enable"] == "false"
    assert "s3cret" not in repr(SOURCE)


def test_the_outbox_relay_publishes_columns_as_the_headers_of_a_direct_produce() -> None:
    config = OutboxRelay(name="shop-outbox", database=DB).connector_config()
    assert config["table.include.list"] == r"public\.choreo_outbox"
    assert config["snapshot.mode"] == "no_data"
    assert config["value.converter"] == "org.apache.kafka.connect.converters.ByteArrayConverter"
    assert config["header.converter"] == "org.apache.kafka.connect.storage.StringConverter"
    assert config["transforms.outbox.route.by.field"] == "topic"
    assert config["transforms.outbox.route.topic.replacement"] == "${routedByValue}"
    placed_headers = [
        p.split(":")[2]
        for p in config["transforms.outbox.table.fields.additional.placement"].split(",")
    ]
    assert placed_headers == [
        "ce_id",
        "ce_type",
        "ce_source",
        "ce_time",
        "ce_specversion",
        "choreo_correlation_id",
        "choreo_causation_id",
        "traceparent",
    ]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"name": "x", "tables": ["orders"]},
        {"name": "x", "tables": "public.orders"},
        {"name": "x", "tables": ["public.orders"], "slot": "Bad-Slot"},
        {"name": "x", "tables": ["public.orders"], "snapshot_mode": "sometimes"},
        {"name": "a/b", "tables": ["public.orders"]},
    ],
)
def test_impossible_sources_fail_when_declared(kwargs: dict[str, Any]) -> None:
    with pytest.raises(choreo.ConfigError):
        CdcSource(database=DB, **kwargs)


def test_postgres_from_a_url() -> None:
    db = Postgres.from_dsn("postgresql://me:p%40ss@pg.local:6543/app")
    assert (db.host, db.port, db.dbname, db.user, db.password) == (
        "pg.local",
        6543,
        "app",
        "me",
        "p@ss",
    )
    assert "password='p@ss'" in db.dsn


# --- the outbox writer ---------------------------------------------------------------------


class Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def execute(self, query: str, params: dict[str, Any]) -> None:
        self.calls.append((query, params))


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return Catalog.load(Path("schemas"))


def test_an_outbox_row_holds_the_exact_bytes_and_headers_of_a_direct_produce(
    catalog: Catalog,
) -> None:
    event = placed("o-9")
    conn = Recorder()
    event_id = Outbox(catalog, source="orders").write(conn, event, causation_id="c-1")
    [(query, row)] = conn.calls
    assert query.startswith('INSERT INTO "public"."choreo_outbox" (id, aggregatetype')
    assert row["payload"] == Codec(catalog).encode(event)
    assert row["id"] == uuid.UUID(event_id)
    assert (row["topic"], row["aggregateid"], row["type"]) == (
        "shop.orders",
        "o-9",
        "shop.orders.OrderPlaced",
    )
    assert (row["source"], row["specversion"]) == ("orders", "1.0")
    assert (row["correlation_id"], row["causation_id"], row["traceparent"]) == (
        "o-9",  # no correlation given: the event's key
        "c-1",
        None,
    )
    datetime.fromisoformat(row["event_time"])  # the ce_time format of a direct produce


def test_an_event_no_topic_carries_is_refused_before_it_is_written(catalog: Catalog) -> None:
    shop = Catalog(
        {t: catalog.versions(t) for t in catalog.event_types},
        {k: v for k, v in catalog.topics.items() if k != "shop.orders"},
        None,
    )
    conn = Recorder()
    with pytest.raises(choreo.TopologyError):
        Outbox(shop, source="orders").write(conn, placed())
    assert conn.calls == []


def test_the_outbox_ddl_has_every_column_the_relay_reads() -> None:
    ddl = outbox_ddl("app.outbox")
    for column in (
        "id uuid PRIMARY KEY",
        "payload bytea NOT NULL",
        "topic text NOT NULL",
        "traceparent text",
    ):
        assert column in ddl
    with pytest.raises(choreo.ConfigError):
        outbox_ddl("app.outbox; DROP TABLE users")


# --- the REST client (its wait also on the real Connect) and the CLI --------------------------


def test_an_unreachable_connect_is_a_transport_error_naming_the_connector() -> None:
    client = ConnectClient("http://127.0.0.1:9", timeout_s=1.0)
    with pytest.raises(choreo.TransportError, match="connector shop-orders"):
        client.status("shop-orders")


def test_waiting_for_a_connect_that_never_answers_gives_up_naming_its_url() -> None:
    with socket.socket() as bound:  # bound, never listening: connections are refused
        bound.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{bound.getsockname()[1]}"
        with pytest.raises(choreo.TransportError, match=f"Kafka Connect at {url} not reachable"):
            ConnectClient(url, timeout_s=1.0).wait_reachable(timeout_s=1.0)


@pytest.mark.stack
def test_waiting_for_the_running_connect_returns(connect: str) -> None:
    ConnectClient(connect).wait_reachable(timeout_s=30.0)  # raises if it never answered


def test_the_cli_prints_the_outbox_ddl_and_fails_in_one_line_on_a_missing_module(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["cdc", "outbox-ddl", "--table", "app.outbox"]) == 0
    assert 'CREATE TABLE IF NOT EXISTS "app"."outbox"' in capsys.readouterr().out
    assert main(["cdc", "status", "no_such_module_here"]) == 1
    assert "cannot import connector module 'no_such_module_here'" in capsys.readouterr().err
