"""Compatibility rules between versions, with messages that name what changed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from choreo._schemas import Catalog, check_catalog

EXAMPLE = Path(__file__).resolve().parents[2] / "schemas"
PREFIX = "t.orders.Placed v2 is not {} compatible with v1: "


def version(*fields: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "record",
        "name": "Placed",
        "namespace": "t.orders",
        "fields": [{"name": "order_id", "type": "string"}, *fields],
    }


def problems(tmp_path: Path, rule: str, *versions: dict[str, Any]) -> list[str]:
    folder = tmp_path / "t" / "orders"
    folder.mkdir(parents=True)
    for number, schema in enumerate(versions, start=1):
        (folder / f"Placed.v{number}.avsc").write_text(json.dumps(schema))
    (tmp_path / "catalog.toml").write_text(
        f'[topics."t.orders"]\nevents = ["t.orders.Placed"]\nkey = "order_id"\n'
        f'compatibility = "{rule}"\n'
    )
    return check_catalog(Catalog.load(tmp_path))


def field(name: str, avro_type: Any, **extra: Any) -> dict[str, Any]:
    return {"name": name, "type": avro_type, **extra}


def enum(*symbols: str, **extra: Any) -> dict[str, Any]:
    return {"type": "enum", "name": "Status", "symbols": list(symbols), **extra}


def test_example_schemas_are_compatible() -> None:
    assert check_catalog(Catalog.load(EXAMPLE)) == []


def test_added_field_without_default_breaks_backward(tmp_path: Path) -> None:
    found = problems(tmp_path, "backward", version(), version(field("currency", "string")))

    assert found == [PREFIX.format("backward") + "field 'currency' was added without a default"]


def test_added_field_with_default_is_backward_and_forward(tmp_path: Path) -> None:
    found = problems(
        tmp_path, "full", version(), version(field("currency", "string", default="EUR"))
    )

    assert found == []


def test_removed_field_without_default_breaks_forward_only(tmp_path: Path) -> None:
    old, new = version(field("note", "string")), version()

    assert problems(tmp_path / "b", "backward", old, new) == []
    assert problems(tmp_path / "f", "forward", old, new) == [
        PREFIX.format("forward") + "field 'note' was removed but v1 has no default for it"
    ]


def test_full_reports_both_directions(tmp_path: Path) -> None:
    found = problems(tmp_path, "full", version(field("a", "string")), version(field("b", "string")))

    assert found == [
        PREFIX.format("backward") + "field 'b' was added without a default",
        PREFIX.format("forward") + "field 'a' was removed but v1 has no default for it",
    ]


def test_none_checks_nothing(tmp_path: Path) -> None:
    assert problems(tmp_path, "none", version(), version(field("currency", "string"))) == []


@pytest.mark.parametrize(
    ("old", "new", "rule"),
    [
        ("int", "long", "backward"),
        ("int", "double", "backward"),
        ("long", "float", "backward"),
        ("float", "double", "backward"),
        ("string", "bytes", "full"),
        ("bytes", "string", "full"),
    ],
)
def test_promotions_are_compatible(tmp_path: Path, old: str, new: str, rule: str) -> None:
    assert problems(tmp_path, rule, version(field("q", old)), version(field("q", new))) == []


def test_narrowing_is_a_break_in_the_direction_that_reads_it(tmp_path: Path) -> None:
    int_to_long = version(field("q", "int")), version(field("q", "long"))

    assert problems(tmp_path / "f", "forward", *int_to_long) == [
        PREFIX.format("forward") + "field 'q': type changed from int to long"
    ]
    assert problems(tmp_path / "b", "backward", *reversed(int_to_long)) == [
        PREFIX.format("backward") + "field 'q': type changed from long to int"
    ]


def test_unrelated_type_change(tmp_path: Path) -> None:
    found = problems(
        tmp_path, "backward", version(field("q", "int")), version(field("q", "string"))
    )

    assert found == [PREFIX.format("backward") + "field 'q': type changed from int to string"]


def test_decimal_scale_change(tmp_path: Path) -> None:
    def money(scale: int) -> dict[str, Any]:
        return {"type": "bytes", "logicalType": "decimal", "precision": 10, "scale": scale}

    found = problems(
        tmp_path, "backward", version(field("p", money(2))), version(field("p", money(3)))
    )

    assert found == [
        PREFIX.format("backward") + "field 'p': type changed from decimal(10,2) to decimal(10,3)"
    ]


def test_enum_symbol_removed_breaks_backward(tmp_path: Path) -> None:
    found = problems(
        tmp_path,
        "backward",
        version(field("status", enum("NEW", "PAID"))),
        version(field("status", enum("NEW"))),
    )

    assert found == [
        PREFIX.format("backward")
        + "field 'status': enum t.orders.Status symbol 'PAID' was removed and the enum has no "
        "default"
    ]


def test_enum_symbol_added_breaks_forward_unless_the_old_enum_has_a_default(
    tmp_path: Path,
) -> None:
    added = version(field("status", enum("NEW", "PAID")))

    assert problems(tmp_path / "a", "forward", version(field("status", enum("NEW"))), added) == [
        PREFIX.format("forward")
        + "field 'status': enum t.orders.Status symbol 'PAID' was added and the enum has no default"
    ]
    with_default = version(field("status", enum("NEW", "OTHER", default="OTHER")))
    assert problems(tmp_path / "b", "forward", with_default, added) == []


def test_making_a_field_nullable(tmp_path: Path) -> None:
    old = version(field("note", "string"))
    new = version(field("note", ["null", "string"], default=None))

    assert problems(tmp_path / "b", "backward", old, new) == []
    assert problems(tmp_path / "f", "forward", old, new) == [
        PREFIX.format("forward") + "field 'note': type changed from string to [null, string]"
    ]


def test_nested_record_in_an_array(tmp_path: Path) -> None:
    def lines(*fields: dict[str, Any]) -> dict[str, Any]:
        line = {"type": "record", "name": "Line", "fields": [field("sku", "string"), *fields]}
        return field("lines", {"type": "array", "items": line})

    found = problems(
        tmp_path, "backward", version(lines()), version(lines(field("discount", "int")))
    )

    assert found == [
        PREFIX.format("backward") + "field 'lines[].discount' was added without a default"
    ]


def test_nested_record_in_an_optional_field(tmp_path: Path) -> None:
    def address(*fields: dict[str, Any]) -> dict[str, Any]:
        record = {"type": "record", "name": "Address", "fields": [field("city", "string"), *fields]}
        return field("address", ["null", record], default=None)

    found = problems(
        tmp_path, "backward", version(address()), version(address(field("zip", "string")))
    )

    assert found == [PREFIX.format("backward") + "field 'address.zip' was added without a default"]


def test_map_values(tmp_path: Path) -> None:
    def attrs(values: str) -> dict[str, Any]:
        return field("attrs", {"type": "map", "values": values})

    found = problems(tmp_path, "backward", version(attrs("int")), version(attrs("string")))

    assert found == [PREFIX.format("backward") + "field 'attrs{}': type changed from int to string"]


def test_renamed_record_needs_an_alias(tmp_path: Path) -> None:
    def item(name: str, **extra: Any) -> dict[str, Any]:
        return field("item", {"type": "record", "name": name, "fields": [], **extra})

    broken = problems(tmp_path / "a", "backward", version(item("Line")), version(item("Item")))
    aliased = problems(
        tmp_path / "b", "backward", version(item("Line")), version(item("Item", aliases=["Line"]))
    )

    assert broken == [
        PREFIX.format("backward") + "field 'item': type changed from t.orders.Line to t.orders.Item"
    ]
    assert aliased == []


def test_renamed_field_with_an_alias(tmp_path: Path) -> None:
    found = problems(
        tmp_path,
        "backward",
        version(field("note", "string")),
        version(field("comment", "string", aliases=["note"])),
    )

    assert found == []


def test_checks_are_transitive(tmp_path: Path) -> None:
    found = problems(
        tmp_path,
        "backward",
        version(),
        version(field("b", "string", default="x")),
        version(field("b", "string")),
    )

    assert found == [
        "t.orders.Placed v3 is not backward compatible with v1: field 'b' was added without a "
        "default"
    ]
