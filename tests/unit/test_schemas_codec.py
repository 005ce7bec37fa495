"""The wire format: round trips, evolution both ways, and every kind of poison record."""

from __future__ import annotations

import io
import json
import uuid
from datetime import UTC, date, datetime, time
from decimal import Decimal
from pathlib import Path
from types import ModuleType
from typing import Annotated, Any, ClassVar

import pytest
from fastavro import schemaless_writer
from pydantic import Field, ValidationError
from test_schemas_codegen import import_source

from choreo._errors import DecodeError, SchemaError
from choreo._schemas import AvroDecimal, Catalog, Codec, Event, generate_models

MONEY = {"type": "bytes", "logicalType": "decimal", "precision": 10, "scale": 2}
POINT = {
    "type": "record",
    "name": "Point",
    "fields": [
        {"name": "x", "type": "int"},
        {"name": "y", "type": "int"},
    ],
}
SINK = {
    "type": "record",
    "name": "Sink",
    "namespace": "t.kitchen",
    "doc": "Every supported type.",
    "fields": [
        {"name": "id", "type": "string"},
        {"name": "nothing", "type": "null"},
        {"name": "flag", "type": "boolean"},
        {"name": "small", "type": "int"},
        {"name": "big", "type": "long"},
        {"name": "ratio", "type": "float"},
        {"name": "precise", "type": "double"},
        {"name": "blob", "type": "bytes"},
        {"name": "color", "type": {"type": "enum", "name": "Color", "symbols": ["RED", "BLUE"]}},
        {"name": "tags", "type": {"type": "array", "items": "string"}},
        {"name": "counts", "type": {"type": "map", "values": "long"}},
        {"name": "note", "type": ["null", "string"], "default": None},
        {"name": "point", "type": POINT},
        {"name": "points", "type": {"type": "array", "items": "Point"}},
        {"name": "maybe_point", "type": ["null", "Point"], "default": None},
        {"name": "at", "type": {"type": "long", "logicalType": "timestamp-millis"}},
        {"name": "at_micros", "type": {"type": "long", "logicalType": "timestamp-micros"}},
        {"name": "local_at", "type": {"type": "long", "logicalType": "local-timestamp-millis"}},
        {"name": "day", "type": {"type": "int", "logicalType": "date"}},
        {"name": "clock", "type": {"type": "int", "logicalType": "time-millis"}},
        {"name": "uid", "type": {"type": "string", "logicalType": "uuid"}},
        {"name": "price", "type": MONEY},
        {"name": "digest", "type": {"type": "fixed", "name": "Digest", "size": 4}},
        {"name": "series", "type": {"type": "map", "values": {"type": "array", "items": "double"}}},
    ],
}


def placed(*extra: dict[str, Any]) -> dict[str, Any]:
    fields = [{"name": "order_id", "type": "string"}, {"name": "total", "type": MONEY}, *extra]
    return {"type": "record", "name": "Placed", "namespace": "t.orders", "fields": fields}


PLACED_V2 = placed(
    {"name": "channel", "type": "string", "default": "web"},
    {"name": "coupon", "type": ["null", "string"], "default": None},
)
CANCELLED = {
    "type": "record",
    "name": "Cancelled",
    "namespace": "t.orders",
    "fields": [{"name": "order_id", "type": "string"}],
}
CATALOG = """
[topics."t.orders"]
events = ["t.orders.Placed", "t.orders.Cancelled"]
key = "order_id"
compatibility = "full"

[topics."t.kitchen"]
events = ["t.kitchen.Sink"]
key = "id"
"""


class PlacedV1(Event):
    """A consumer deployed before v2 was published."""

    event_type: ClassVar[str] = "t.orders.Placed"
    order_id: str
    total: Annotated[Decimal, AvroDecimal(10, 2)]


def make_catalog(root: Path, files: dict[str, Any], catalog: str = CATALOG) -> Catalog:
    for relative, schema in files.items():
        path = root / "schemas" / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(schema))
    (root / "schemas" / "catalog.toml").write_text(catalog)
    return Catalog.load(root / "schemas")


def import_models(catalog: Catalog, root: Path) -> ModuleType:
    module: ModuleType = import_source(generate_models(catalog), root)
    return module


@pytest.fixture
def catalog(tmp_path: Path) -> Catalog:
    return make_catalog(
        tmp_path,
        {
            "t/orders/Placed.v1.avsc": placed(),
            "t/orders/Placed.v2.avsc": PLACED_V2,
            "t/orders/Cancelled.v1.avsc": CANCELLED,
            "t/kitchen/Sink.v1.avsc": SINK,
        },
    )


@pytest.fixture
def models(catalog: Catalog, tmp_path: Path) -> ModuleType:
    return import_models(catalog, tmp_path)


@pytest.fixture
def codec(catalog: Catalog) -> Codec:
    return Codec(catalog)


def raw_record(catalog: Catalog, event_type: str, version: int, record: dict[str, Any]) -> bytes:
    """Bytes as another producer (not our models) would write them."""
    schema = catalog.versions(event_type)[version - 1]
    out = io.BytesIO(b"\xc3\x01" + schema.fingerprint)
    out.seek(0, io.SEEK_END)
    schemaless_writer(out, schema.schema, record)
    return out.getvalue()


def crc64_avro(text: str) -> int:
    """The Avro spec's fingerprint, written out independently of fastavro."""
    empty = 0xC15D213AA4D7A795
    table = []
    for i in range(256):
        fp = i
        for _ in range(8):
            fp = (fp >> 1) ^ (empty & -(fp & 1))
        table.append(fp)
    fp = empty
    for byte in text.encode():
        fp = (fp >> 8) ^ table[(fp ^ byte) & 0xFF]
    return fp


def test_every_supported_type_round_trips(models: ModuleType, codec: Codec) -> None:
    sink = models.Sink(
        id="s-1",
        nothing=None,
        flag=True,
        small=-(2**31),
        big=2**62,
        ratio=0.5,
        precise=1e-300,
        blob=b"\x00\xff",
        color=models.Color.BLUE,
        tags=["a", "b"],
        counts={"x": 1, "y": -2},
        note="hello",
        point=models.Point(x=1, y=2),
        points=[models.Point(x=3, y=4)],
        maybe_point=models.Point(x=5, y=6),
        at=datetime(2024, 5, 1, 12, 30, 15, 123000, tzinfo=UTC),
        at_micros=datetime(2024, 5, 1, 12, 30, 15, 123456, tzinfo=UTC),
        local_at=datetime(2024, 5, 1, 9, 0),
        day=date(2024, 2, 29),
        clock=time(23, 59, 59),
        uid=uuid.UUID("12345678-1234-5678-1234-567812345678"),
        price=Decimal("-12345678.90"),
        digest=b"abcd",
        series={"temps": [1.5, -2.25]},
    )

    decoded = codec.decode(codec.encode(sink), models.Sink)

    assert decoded == sink
    assert decoded.at.tzinfo is not None and decoded.color is models.Color.BLUE


def test_optional_fields_default_to_none(models: ModuleType, codec: Codec) -> None:
    event = models.Placed(order_id="o-1", total=Decimal("9.99"))

    decoded = codec.decode(codec.encode(event), models.Placed)

    assert (decoded.coupon, decoded.channel) == (None, "web")


def test_header_is_avro_single_object_encoding(models: ModuleType, codec: Codec) -> None:
    data = codec.encode(PlacedV1(order_id="o-1", total=Decimal("1.00")))

    canonical = (
        '{"name":"t.orders.Placed","type":"record","fields":[{"name":"order_id","type":"string"},'
        '{"name":"total","type":"bytes"}]}'
    )
    assert data[:2] == b"\xc3\x01"
    assert int.from_bytes(data[2:10], "little") == crc64_avro(canonical)


def test_v1_data_is_read_by_a_v2_model_with_defaults(models: ModuleType, codec: Codec) -> None:
    data = codec.encode(PlacedV1(order_id="o-1", total=Decimal("5")))

    decoded = codec.decode(data, models.Placed)

    assert decoded == models.Placed(order_id="o-1", total=Decimal("5.00"), channel="web")


def test_v2_data_is_read_by_a_v1_model(models: ModuleType, codec: Codec) -> None:
    data = codec.encode(models.Placed(order_id="o-2", total=Decimal("7.5"), coupon="SPRING"))

    decoded = codec.decode(data, PlacedV1)

    assert decoded == PlacedV1(order_id="o-2", total=Decimal("7.50"))


def test_decode_any_uses_the_registered_model(models: ModuleType, codec: Codec) -> None:
    codec.register(models.Placed, models.Cancelled)
    data = codec.encode(models.Cancelled(order_id="o-3"))

    assert codec.event_type_of(data) == "t.orders.Cancelled"
    assert codec.decode_any(data) == models.Cancelled(order_id="o-3")


def test_decimals_are_validated_and_written_at_the_schema_scale(
    models: ModuleType, codec: Codec
) -> None:
    with pytest.raises(ValidationError, match="no more than 2 decimal places"):
        models.Placed(order_id="o", total=Decimal("1.234"))

    data = codec.encode(models.Placed(order_id="o", total=Decimal("1.500")))

    assert codec.decode(data, models.Placed).total.as_tuple().exponent == -2


def test_avro_int_range_is_checked_when_the_event_is_built(models: ModuleType) -> None:
    with pytest.raises(ValidationError, match="less than or equal to 2147483647"):
        models.Point(x=2**31, y=0)


def test_a_model_matching_no_version_fails_before_decoding(
    models: ModuleType, codec: Codec
) -> None:
    class Drifted(Event):
        event_type: ClassVar[str] = "t.orders.Cancelled"
        order_id: int

    data = codec.encode(models.Cancelled(order_id="o"))

    with pytest.raises(SchemaError, match=r"Drifted does not match .*field 'order_id'"):
        codec.decode(data, Drifted)


def reason_of(call: Any, *args: Any) -> DecodeError:
    with pytest.raises(DecodeError) as caught:
        call(*args)
    return caught.value


def test_tombstone(models: ModuleType, codec: Codec) -> None:
    assert reason_of(codec.decode, None, models.Placed).reason == "tombstone"


def test_too_large(models: ModuleType, catalog: Catalog) -> None:
    small = Codec(catalog, max_bytes=32)

    error = reason_of(small.decode, b"\xc3\x01" + bytes(40), models.Placed)

    assert error.reason == "too-large" and "32" in str(error)


@pytest.mark.parametrize("data", [b"", b"\xc3\x01\x00", b'{"order_id": "o-1"}', bytes(20)])
def test_not_avro(models: ModuleType, codec: Codec, data: bytes) -> None:
    assert reason_of(codec.decode, data, models.Placed).reason == "not-avro"


def test_body_that_does_not_decode_is_not_avro(
    models: ModuleType, codec: Codec, catalog: Catalog
) -> None:
    header = codec.encode(models.Cancelled(order_id="o"))[:10]

    bad_utf8 = reason_of(codec.decode, header + b"\x06\xff\xfe\xfd", models.Cancelled)
    trailing = reason_of(codec.decode, header + b"\x02o" + b"junk", models.Cancelled)

    assert (bad_utf8.reason, trailing.reason) == ("not-avro", "not-avro")
    assert "4 bytes after the body" in str(trailing)


def test_unknown_fingerprint_names_it(models: ModuleType, codec: Codec) -> None:
    error = reason_of(
        codec.decode, b"\xc3\x01" + bytes.fromhex("0102030405060708") + b"\x00", models.Placed
    )

    assert error.reason == "unknown-fingerprint" and "0102030405060708" in str(error)


def test_truncated(models: ModuleType, codec: Codec) -> None:
    data = codec.encode(models.Placed(order_id="o-1", total=Decimal("9.99"), coupon="X"))

    for cut in (1, 3, len(data) - 10):
        assert reason_of(codec.decode, data[:-cut], models.Placed).reason == "truncated"


def test_invalid_names_the_field(catalog: Catalog, codec: Codec) -> None:
    class Strict(Event):
        event_type: ClassVar[str] = "t.orders.Cancelled"
        order_id: Annotated[str, Field(min_length=3)]

    data = raw_record(catalog, "t.orders.Cancelled", 1, {"order_id": "x"})

    error = reason_of(codec.decode, data, Strict)

    assert error.reason == "invalid" and "field 'order_id'" in str(error)


def test_wrong_type(models: ModuleType, codec: Codec) -> None:
    data = codec.encode(models.Cancelled(order_id="o"))

    error = reason_of(codec.decode, data, models.Placed)

    assert error.reason == "wrong-type" and "t.orders.Cancelled" in str(error)


def test_decode_any_without_a_registered_model(models: ModuleType, codec: Codec) -> None:
    data = codec.encode(models.Cancelled(order_id="o"))

    assert reason_of(codec.decode_any, data).reason == "unknown-type"


def test_data_of_an_incompatible_version(tmp_path: Path) -> None:
    breaking = placed({"name": "currency", "type": "string"})
    unchecked = '[topics."t.orders"]\nevents = ["t.orders.Placed"]\nkey = "order_id"\n'
    catalog = make_catalog(
        tmp_path,
        {"t/orders/Placed.v1.avsc": placed(), "t/orders/Placed.v2.avsc": breaking},
        unchecked + 'compatibility = "none"\n',
    )
    models = import_models(catalog, tmp_path)
    codec = Codec(catalog)
    data = codec.encode(PlacedV1(order_id="o", total=Decimal("1")))

    error = reason_of(codec.decode, data, models.Placed)

    assert error.reason == "incompatible" and "'currency'" in str(error)
