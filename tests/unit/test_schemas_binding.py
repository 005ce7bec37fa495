"""check_model: a model that drifted from its schema fails at start-up, naming the field."""

from __future__ import annotations

import json
import re
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, ClassVar

import pytest
from pydantic import AwareDatetime, Field

from choreo._errors import SchemaError
from choreo._schemas import (
    AvroDecimal,
    Catalog,
    Event,
    Int32,
    Record,
    SchemaVersion,
    Timestamp,
    check_model,
)

SCHEMA = {
    "type": "record",
    "name": "Placed",
    "namespace": "t.orders",
    "fields": [
        {"name": "order_id", "type": "string"},
        {"name": "status", "type": {"type": "enum", "name": "Status", "symbols": ["NEW", "PAID"]}},
        {
            "name": "lines",
            "type": {
                "type": "array",
                "items": {
                    "type": "record",
                    "name": "Line",
                    "fields": [
                        {"name": "sku", "type": "string"},
                        {"name": "quantity", "type": "int"},
                        {
                            "name": "price",
                            "type": {
                                "type": "bytes",
                                "logicalType": "decimal",
                                "precision": 10,
                                "scale": 2,
                            },
                        },
                    ],
                },
            },
        },
        {"name": "attributes", "type": {"type": "map", "values": "string"}},
        {"name": "placed_at", "type": {"type": "long", "logicalType": "timestamp-millis"}},
        {"name": "coupon", "type": ["null", "string"], "default": None},
    ],
}


@pytest.fixture(scope="module")
def schema(tmp_path_factory: pytest.TempPathFactory) -> SchemaVersion:
    root = tmp_path_factory.mktemp("schemas")
    (root / "t" / "orders").mkdir(parents=True)
    (root / "t" / "orders" / "Placed.v1.avsc").write_text(json.dumps(SCHEMA))
    (root / "catalog.toml").write_text("")
    return Catalog.load(root).latest("t.orders.Placed")


class Status(StrEnum):
    NEW = "NEW"
    PAID = "PAID"


class Line(Record):
    sku: str
    quantity: Int32
    price: Annotated[Decimal, AvroDecimal(10, 2)]


class Placed(Event):
    event_type: ClassVar[str] = "t.orders.Placed"
    order_id: str
    status: Status
    lines: list[Line]
    attributes: dict[str, str]
    placed_at: Timestamp
    coupon: str | None = None


def mismatch(schema: SchemaVersion, model: type[Event]) -> str:
    with pytest.raises(SchemaError) as caught:
        check_model(model, schema)
    return str(caught.value)


def test_matching_model_passes(schema: SchemaVersion) -> None:
    check_model(Placed, schema)


def test_plain_types_that_mean_the_same_are_accepted(schema: SchemaVersion) -> None:
    class HandWritten(Placed):
        placed_at: datetime
        coupon: Annotated[str, Field(max_length=20)] | None = None

    class Aware(Placed):
        placed_at: AwareDatetime

    check_model(HandWritten, schema)
    check_model(Aware, schema)


def test_missing_field(schema: SchemaVersion) -> None:
    class Missing(Event):
        event_type: ClassVar[str] = "t.orders.Placed"
        order_id: str

    assert re.search(
        r"Missing does not match t\.orders\.Placed v1 .*field 'status' is missing",
        mismatch(schema, Missing),
    )


def test_extra_field(schema: SchemaVersion) -> None:
    class Extra(Placed):
        channel: str = "web"

    assert "field 'channel' is in the model but not in the schema" in mismatch(schema, Extra)


def test_wrong_type(schema: SchemaVersion) -> None:
    class WrongType(Placed):
        order_id: int  # type: ignore[assignment]

    assert "field 'order_id' is int in the model but string in the schema" in mismatch(
        schema, WrongType
    )


def test_wrong_optionality_both_ways(schema: SchemaVersion) -> None:
    class Optional(Placed):
        order_id: str | None = None  # type: ignore[assignment]

    class Required(Placed):
        coupon: str

    assert "field 'order_id' is optional in the model but not nullable" in mismatch(
        schema, Optional
    )
    assert "field 'coupon' is required in the model but nullable" in mismatch(schema, Required)


def test_nested_field_path(schema: SchemaVersion) -> None:
    class FloatLine(Line):
        quantity: float  # type: ignore[assignment]

    class Nested(Placed):
        lines: list[FloatLine]  # type: ignore[assignment]

    assert "field 'lines[].quantity' is float in the model but int in the schema" in mismatch(
        schema, Nested
    )


def test_enum_symbols_must_match(schema: SchemaVersion) -> None:
    class Fewer(StrEnum):
        NEW = "NEW"

    class WrongEnum(Placed):
        status: Fewer  # type: ignore[assignment]

    assert "field 'status' enum Fewer has ['NEW'] but t.orders.Status has ['NEW', 'PAID']" in (
        mismatch(schema, WrongEnum)
    )


def test_map_value_type(schema: SchemaVersion) -> None:
    class WrongMap(Placed):
        attributes: dict[str, int]  # type: ignore[assignment]

    assert "field 'attributes{}' is int in the model but string" in mismatch(schema, WrongMap)


def test_event_type_must_be_the_schema_name(schema: SchemaVersion) -> None:
    class Renamed(Placed):
        event_type: ClassVar[str] = "t.orders.Other"

    assert "has event_type 't.orders.Other', expected 't.orders.Placed'" in mismatch(
        schema, Renamed
    )


def test_an_alias_is_the_field_name_on_the_wire(schema: SchemaVersion) -> None:
    class Aliased(Event):
        event_type: ClassVar[str] = "t.orders.Placed"
        order_id: str
        status: Status
        lines: list[Line]
        attributes: dict[str, str]
        placed_at: Timestamp
        coupon_code: str | None = Field(default=None, alias="coupon")

    check_model(Aliased, schema)
