"""The transactional outbox on the real stack: what a consumer gets is what a produce sends."""

from __future__ import annotations

import asyncio
from collections import defaultdict

import psycopg
import pytest
from builders import cancel_order, placed, received
from cdc_kit import CdcKit, eventually, read_topic

import choreo
from choreo import _headers
from choreo._cdc.outbox_table import insert_sql
from choreo._config import KafkaConfig, ServiceConfig
from choreo._publisher import Publisher
from choreo._runtime import dead_letters as dlq
from choreo._schemas import Codec
from choreo._transport.base import Record
from choreo._transport.memory import partition_for_key
from choreo.outbox import Outbox, OutboxRelay, outbox_ddl
from services.events import OrderPlaced

pytestmark = pytest.mark.stack

WRITES = 1000
PER_TRANSACTION = 5
AGGREGATES = 25


def outbox_relay(cdc: CdcKit) -> OutboxRelay:
    table = f"public.{cdc.name('outbox')}"
    cdc.tables.append(table.split(".")[1])
    cdc.sql(outbox_ddl(table))
    return OutboxRelay(name=cdc.name("relay"), database=cdc.database, table=table)


def test_committed_writes_arrive_once_each_in_aggregate_order_and_rollbacks_never(
    cdc: CdcKit,
) -> None:
    catalog, topic = cdc.catalog(partitions=3)
    relay = outbox_relay(cdc)
    outbox = Outbox(catalog, source="orders-api", table=relay.table)
    svc = choreo.Service(cdc.name("fulfilment"))
    got: dict[str, tuple[OrderPlaced, Record]] = {}
    duplicates: list[str] = []

    @svc.on(OrderPlaced)
    def fulfil(event: OrderPlaced, ctx: choreo.Context) -> None:
        assert ctx.record is not None and ctx.event_id is not None
        if ctx.event_id in got:
            duplicates.append(ctx.event_id)
        got[ctx.event_id] = (event, ctx.record)

    committed: list[tuple[str, OrderPlaced]] = []

    def write_all() -> None:
        with psycopg.connect(cdc.dsn) as conn:
            for tx in range(WRITES // PER_TRANSACTION):
                rolled_back = tx % 3 == 2
                written = []
                with conn.transaction(force_rollback=rolled_back):
                    for n in range(PER_TRANSACTION):
                        seq = tx * PER_TRANSACTION + n
                        event = placed(f"o-{seq % AGGREGATES}", sku=f"SKU-{seq}")
                        written.append((outbox.write(conn, event, correlation_id="bulk"), event))
                if not rolled_back:
                    committed.extend(written)

    async def scenario() -> tuple[str, float]:
        config = ServiceConfig(kafka=KafkaConfig(bootstrap_servers=cdc.kafka))
        async with cdc.running(svc, catalog):
            cdc.apply(relay)
            await asyncio.to_thread(write_all)
            async with Publisher("orders-api", config, catalog) as direct:
                direct_id = await direct.publish(committed[0][1], correlation_id="bulk")
            took = await eventually(lambda: len(got) > len(committed), 60, "every event")
            await asyncio.sleep(1.0)  # anything extra (a duplicate, a rolled-back row) shows now
        return direct_id, took

    direct_id, took = asyncio.run(scenario())
    _, direct = got.pop(direct_id)
    print(
        f"\noutbox: {WRITES} writes, {len(committed)} committed, {len(got)} delivered, "
        f"{len(duplicates)} duplicates, drained {took:.1f}s after the last commit"
    )

    assert len(committed) == 670
    assert duplicates == []
    assert set(got) == {event_id for event_id, _ in committed}
    # per aggregate, in commit order (got is in arrival order)
    sent: dict[str, list[str]] = defaultdict(list)
    for event_id, event in committed:
        sent[event.order_id].append(event_id)
    arrived: dict[str, list[str]] = defaultdict(list)
    for event_id, (event, _) in got.items():
        arrived[event.order_id].append(event_id)
    assert arrived == sent
    # what a direct produce of the same event sends: topic, partition, key, bytes, headers
    _, twin = got[committed[0][0]]
    assert (twin.topic, twin.partition, twin.key) == (direct.topic, direct.partition, direct.key)
    assert twin.value == direct.value
    assert (
        _present(twin)
        == _present(direct)
        == [
            _headers.ID,
            _headers.TYPE,
            _headers.SOURCE,
            _headers.TIME,
            _headers.SPECVERSION,
            _headers.CORRELATION,
        ]
    )
    for name in (_headers.TYPE, _headers.SOURCE, _headers.SPECVERSION, _headers.CORRELATION):
        assert twin.header(name) == direct.header(name)
    assert len(_header(twin, _headers.TIME)) == len(_header(direct, _headers.TIME))
    # and so for every relayed event
    codec = Codec(catalog)
    by_id = dict(committed)
    for event_id, (event, record) in got.items():
        assert event == by_id[event_id]
        assert record.topic == topic
        assert record.value == codec.encode(event)
        assert record.key == event.order_id.encode()
        assert record.partition == partition_for_key(record.key, 3)
        assert _present(record) == _present(direct)
        # NULL columns arrive as headers with a null value, where a produce has none
        assert [n for n, v in record.headers if v is None] == [_headers.CAUSATION, "traceparent"]


def _present(record: Record) -> list[str]:
    """Header names that carry a value."""
    return [name for name, value in record.headers if value is not None]


def test_malformed_rows_are_dead_lettered_with_the_reason_and_the_stream_flows_on(
    cdc: CdcKit,
) -> None:
    catalog, topic = cdc.catalog(partitions=1)
    relay = outbox_relay(cdc)
    outbox = Outbox(catalog, source="orders-api", table=relay.table)
    codec = Codec(catalog)
    svc = choreo.Service(cdc.name("fulfilment"))
    handled: list[str] = []

    @svc.on(OrderPlaced)
    def fulfil(event: OrderPlaced, ctx: choreo.Context) -> None:
        handled.append(event.order_id)

    poison = {
        "not-avro": (OrderPlaced.event_type, b'{"order_id": "o-2"}'),
        "unknown-fingerprint": (OrderPlaced.event_type, b"\xc3\x01" + bytes(8) + b"\x02"),
        "wrong-type": (OrderPlaced.event_type, codec.encode(received("o-4"))),
    }

    def write(conn: psycopg.Connection[tuple[object, ...]]) -> None:
        with conn.transaction():
            outbox.write(conn, placed("o-1"))
        for reason, (event_type, payload) in poison.items():
            with conn.transaction():  # a hand-written row, as a buggy writer would make it
                row = outbox.row(placed(f"bad-{reason}"))
                row.update(type=event_type, payload=payload)
                conn.execute(insert_sql(relay.table), row)
        with conn.transaction():  # a type the catalog does not know: parked, never dropped
            row = outbox.row(placed("o-5"))
            row.update(type="shop.orders.OrderShipped")
            conn.execute(insert_sql(relay.table), row)
        with conn.transaction():  # a type the topic carries that it does not handle: skipped
            outbox.write(conn, cancel_order("o-7"))
        with conn.transaction():
            outbox.write(conn, placed("o-6"))

    parked: list[Record] = []

    async def scenario() -> None:
        async with cdc.running(svc, catalog) as runner:
            cdc.apply(relay)
            with psycopg.connect(cdc.dsn) as conn:
                await asyncio.to_thread(write, conn)
            await eventually(lambda: handled == ["o-1", "o-6"], 30, "the good events")
            dead_letters = dlq.dlq_topic(svc.name, topic)
            parked.extend(await read_topic(runner.transport, dead_letters, 4))

    asyncio.run(scenario())
    reasons = {_header(r, dlq.REASON): r for r in parked}
    assert set(reasons) == {*poison, "unknown-type"}
    assert "shop.orders.OrderShipped" in _header(reasons.pop("unknown-type"), dlq.ERROR_MESSAGE)
    for reason, record in reasons.items():
        assert record.value == poison[reason][1]
        assert _header(record, dlq.TOPIC) == topic
        assert _header(record, dlq.ERROR_TYPE) == "choreo._errors.DecodeError"
    assert handled == ["o-1", "o-6"]


def _header(record: Record, name: str) -> str:
    value = record.header(name)
    assert value is not None, f"no {name} header"
    return value.decode()
