"""Row changes as Avro in the schema registry wire format, through Apicurio's Connect converter.

Real PostgreSQL, Debezium, Kafka and Apicurio Registry: the converter registers each table's
envelope schema, frames records the Confluent way, and ``on_change`` reads them into the same
typed ``Change`` objects as JSON ones, across a column added mid-stream.
"""

from __future__ import annotations

import asyncio
import os
import random
from dataclasses import replace
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
from cdc_kit import SCHEMAS, CdcKit, eventually, read_topic
from pydantic import BaseModel

import choreo
from choreo._cdc.change import change_decoder
from choreo._config import KafkaConfig
from choreo._dev.connect import Connect
from choreo._dev.registry import CCOMPAT_PATH
from choreo._errors import ConfigError, DecodeError
from choreo._schemas import Catalog
from choreo._schemas.registry_client import RegistryClient
from choreo._schemas.registry_wire import HEADER_SIZE, RegistrySchemas, frame, schema_id
from choreo._transport.base import Record
from choreo._transport.registry import make_transport
from choreo.cdc import CdcSource, Change, Postgres

MUTATIONS = 300


class Product(BaseModel):
    id: int
    name: str
    price: Decimal
    seen: datetime
    born: date | None = None


@pytest.fixture
def avro_connect(connect: str) -> str:
    """Connect with Apicurio's converter: a worker started before it was installed fails here
    with the restart command, rather than with a connector that cannot load its converter."""
    stale = Connect(port=int(connect.rsplit(":", 1)[1])).stale()
    if stale is not None:
        pytest.fail(f"connect: {stale}")
    return connect


def test_a_registry_that_is_not_an_http_url_is_refused_naming_the_connector() -> None:
    with pytest.raises(ConfigError, match=r"crm: avro_registry 'registry:8080'"):
        CdcSource(
            name="crm", database=Postgres(), tables=["public.t"], avro_registry="registry:8080"
        )


@pytest.mark.stack
def test_a_connector_switched_from_json_to_avro_delivers_typed_changes_across_a_column_added(
    cdc: CdcKit, schema_registry: str, avro_connect: str
) -> None:
    """The service keeps running while the connector moves to Avro: one handler reads both."""
    products = cdc.table(
        "id int PRIMARY KEY, name text NOT NULL, price numeric(10,2) NOT NULL, seen timestamp "
        "NOT NULL"
    )
    cdc.sql(f"INSERT INTO {products} VALUES (1, 'lamp', 12.50, '2026-01-02 03:04:05.678')")
    as_json = CdcSource(
        name=cdc.name("avro"),
        database=cdc.database,
        tables=[products],
        topic_prefix=f"avro-{cdc.name('p')}",  # a '-', which Avro names cannot hold
    )
    # Same connector, slot and topics; it streams on from the slot (no second snapshot).
    source = replace(
        as_json, avro_registry=schema_registry.removesuffix(CCOMPAT_PATH), snapshot_mode="no_data"
    )
    svc = choreo.Service(cdc.name("avro_mirror"))
    changes: list[Change[Product]] = []

    @svc.on_change(products, source=source, model=Product)
    def on_product(change: Change[Product], ctx: choreo.Context) -> None:
        changes.append(change)

    async def scenario() -> list[Record]:
        cdc.apply(as_json)
        async with cdc.running(svc, cdc.catalog()[0], registry=schema_registry) as runner:
            await eventually(lambda: len(changes) == 1, 60, "the snapshot row")
            # Deleted first, so no change can still leave through the JSON converter.
            cdc.connect.delete(as_json.name)
            cdc.apply(source)
            cdc.sql(f"INSERT INTO {products} VALUES (2, 'desk', 99.99, '2026-02-03 04:05:06')")
            cdc.sql(f"UPDATE {products} SET price = 89.99 WHERE id = 2")
            cdc.sql(
                f"ALTER TABLE {products} ADD COLUMN born date",
                f"INSERT INTO {products} VALUES (3, 'chair', 5, '2026-03-04 05:06:07', "
                "'2020-05-06')",
            )
            cdc.sql(f"DELETE FROM {products} WHERE id = 1")
            await eventually(lambda: len(changes) == 5, 30, "the streamed changes")
            await asyncio.sleep(0.5)  # nothing more (the delete's tombstone) may reach it
            assert runner.stopped == {}
        transport = make_transport("confluent", KafkaConfig(bootstrap_servers=cdc.kafka))
        return await read_topic(transport, source.topic_of(products), 6)

    records = asyncio.run(scenario())

    assert [c.op for c in changes] == ["read", "create", "update", "create", "delete"]
    assert changes[0].after == Product(
        id=1, name="lamp", price=Decimal("12.50"), seen=datetime(2026, 1, 2, 3, 4, 5, 678000, UTC)
    )
    assert changes[2].before is not None and changes[2].before.price == Decimal("99.99")
    assert changes[2].after is not None and changes[2].after.price == Decimal("89.99")
    assert changes[3].after is not None and changes[3].after.born == date(2020, 5, 6)
    assert changes[4].before is not None and changes[4].before.name == "lamp"
    assert changes[4].key == {"id": 1} and changes[4].table == products
    assert changes[1].source.lsn is not None and changes[3].source.lsn is not None
    assert changes[1].source.lsn < changes[3].source.lsn

    # The records themselves: the snapshot row in JSON, then Confluent framing, ids the
    # Confluent-compatible API serves, a schema before the column was added and one after.
    first, *values = [r.value for r in records if r.value is not None]
    assert first[:1] == b"{" and len(values) == 4 and all(v[:1] == b"\x00" for v in values)
    ids = [schema_id(v) for v in values]
    assert ids[0] == ids[1] != ids[2] == ids[3]
    client = RegistryClient(schema_registry, timeout_s=10)
    latest = client.latest(f"{source.topic_of(products)}-value")
    assert latest is not None and '"born"' in latest and "Envelope" in latest

    _mutations_are_changes_or_decode_errors(values, client)


def _mutations_are_changes_or_decode_errors(values: list[bytes], client: RegistryClient) -> None:
    """Cut, flipped, grown and re-numbered copies of real records: a change or a DecodeError
    with a reason, never another exception (which would stop a partition)."""
    seed = int(os.environ.get("CHOREO_TEST_SEED", random.randrange(2**32)))
    print(f"\nmutation seed {seed} (CHOREO_TEST_SEED to repeat)")
    rng = random.Random(seed)
    decode = change_decoder(Product).with_registry(RegistrySchemas(client, Catalog.load(SCHEMAS)))
    reasons: dict[str, int] = {}
    for _ in range(MUTATIONS):
        data = bytearray(rng.choice(values))
        for _ in range(rng.randrange(1, 4)):  # 60,000 of these found an OverflowError once
            kind = rng.randrange(4)
            if kind == 0 and len(data) > HEADER_SIZE:
                del data[rng.randrange(HEADER_SIZE, len(data)) :]
            elif kind == 1 and len(data) > HEADER_SIZE:
                data[rng.randrange(HEADER_SIZE, len(data))] = rng.randrange(256)
            elif kind == 2:
                data += rng.randbytes(rng.randrange(1, 9))
            else:
                data[:HEADER_SIZE] = frame(rng.randrange(10**6, 2**31))
        try:
            decode(Record("t", 0, 0, b'{"id": 1}', bytes(data), [], 0))
        except DecodeError as error:
            reasons[error.reason] = reasons.get(error.reason, 0) + 1
    print(f"mutations refused: {reasons}")
    assert {"not-avro", "unknown-schema-id"} <= set(reasons)
