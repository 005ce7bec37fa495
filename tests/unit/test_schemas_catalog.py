"""Loading schemas/ and catalog.toml: the errors a team meets when it gets the layout wrong."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from choreo._errors import SchemaError, TopologyError
from choreo._schemas import Catalog, TopicSpec

EXAMPLE = Path(__file__).resolve().parents[2] / "schemas"

TOPIC = """
[topics."t.orders"]
events = ["t.orders.Placed"]
key = "order_id"
"""


def placed(*extra: dict[str, Any], name: str = "Placed") -> dict[str, Any]:
    fields = [{"name": "order_id", "type": "string"}, *extra]
    return {"type": "record", "name": name, "namespace": "t.orders", "fields": fields}


def load(tmp_path: Path, files: dict[str, Any], catalog: str = TOPIC) -> Catalog:
    for relative, content in files.items():
        path = tmp_path / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content if isinstance(content, str) else json.dumps(content))
    (tmp_path / "catalog.toml").write_text(catalog)
    return Catalog.load(tmp_path)


def test_example_catalog_loads_with_its_topics_and_versions() -> None:
    catalog = Catalog.load(EXAMPLE)

    assert set(catalog.topics) == {
        "shop.orders",
        "shop.inventory",
        "shop.payments",
        "shop.approvals",
        "shop.fraud",
        "shop.shipping",
        "shop.notifications",
        "shop.followups",
        "shop.sagas",
    }
    assert [n for n, t in catalog.topics.items() if t.scheduled] == ["shop.followups"]
    orders = catalog.topics["shop.orders"]
    assert orders == TopicSpec(
        name="shop.orders",
        events=(
            "shop.orders.OrderReceived",
            "shop.orders.OrderInvalid",
            "shop.orders.OrderPlaced",
            "shop.orders.OrderCancelled",
            "shop.orders.OrderCompleted",
            "shop.orders.CancelOrder",
            "shop.orders.OrderCancellationRequested",
        ),
        key="order_id",
        partitions=3,
        retention_ms=604800000,
        compatibility="backward",
    )
    assert catalog.topic_of("shop.payments.PaymentDeclined").name == "shop.payments"
    assert [v.version for v in catalog.versions("shop.orders.OrderPlaced")] == [1, 2]
    assert catalog.latest("shop.orders.OrderPlaced").path.name == "OrderPlaced.v2.avsc"
    assert catalog.codegen_module == Path("services/events.py")


def test_topic_defaults(tmp_path: Path) -> None:
    catalog = load(tmp_path, {"t/orders/Placed.v1.avsc": placed()})

    spec = catalog.topics["t.orders"]
    assert (spec.partitions, spec.retention_ms, spec.compatibility) == (1, None, "backward")
    assert catalog.codegen_module is None


def test_unparseable_schema_names_the_file_and_fastavros_reason(tmp_path: Path) -> None:
    broken = placed({"name": "total", "type": "money"})

    with pytest.raises(SchemaError, match=r"Placed\.v1\.avsc: fastavro cannot parse it: .*money"):
        load(tmp_path, {"t/orders/Placed.v1.avsc": broken})


def test_invalid_json_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(SchemaError, match=r"Placed\.v1\.avsc: cannot read JSON"):
        load(tmp_path, {"t/orders/Placed.v1.avsc": "{not json"})


def test_file_place_must_match_the_schema_full_name(tmp_path: Path) -> None:
    with pytest.raises(
        SchemaError, match=r"place says t\.orders\.Placed .* named t\.orders\.Other"
    ):
        load(tmp_path, {"t/orders/Placed.v1.avsc": placed(name="Other")})


def test_file_name_must_carry_a_version(tmp_path: Path) -> None:
    with pytest.raises(SchemaError, match=r"Placed\.avsc: schema files are named Name\.vN\.avsc"):
        load(tmp_path, {"t/orders/Placed.avsc": placed()})


def test_versions_must_be_contiguous_from_v1(tmp_path: Path) -> None:
    files = {"t/orders/Placed.v1.avsc": placed(), "t/orders/Placed.v3.avsc": placed()}

    with pytest.raises(SchemaError, match=r"t\.orders\.Placed: .* missing v2"):
        load(tmp_path, files)


def test_duplicate_field_names_are_refused(tmp_path: Path) -> None:
    twice = placed({"name": "order_id", "type": "string"})

    with pytest.raises(SchemaError, match=r"Placed\.v1\.avsc: .*two fields named 'order_id'"):
        load(tmp_path, {"t/orders/Placed.v1.avsc": twice})


def test_null_default_needs_null_first_in_the_union(tmp_path: Path) -> None:
    wrong = placed({"name": "note", "type": ["string", "null"], "default": None})

    with pytest.raises(SchemaError, match=r"field 'note' .* 'null' must be the first branch"):
        load(tmp_path, {"t/orders/Placed.v1.avsc": wrong})


def test_recursive_types_are_refused(tmp_path: Path) -> None:
    node = {
        "type": "record",
        "name": "Node",
        "fields": [{"name": "next", "type": ["null", "Node"], "default": None}],
    }
    recursive = placed({"name": "head", "type": node})

    with pytest.raises(SchemaError, match=r"recursive type t\.orders\.Node"):
        load(tmp_path, {"t/orders/Placed.v1.avsc": recursive})


def test_topic_event_without_schema(tmp_path: Path) -> None:
    catalog = TOPIC.replace('["t.orders.Placed"]', '["t.orders.Placed", "t.orders.Shipped"]')

    with pytest.raises(TopologyError, match=r"topic 't\.orders' lists t\.orders\.Shipped"):
        load(tmp_path, {"t/orders/Placed.v1.avsc": placed()}, catalog)


def test_event_on_two_topics(tmp_path: Path) -> None:
    catalog = TOPIC + TOPIC.replace('[topics."t.orders"]', '[topics."t.other"]')

    with pytest.raises(TopologyError, match=r"t\.orders\.Placed is on topics 't\.orders' and "):
        load(tmp_path, {"t/orders/Placed.v1.avsc": placed()}, catalog)


def test_key_field_missing_in_an_old_version(tmp_path: Path) -> None:
    v1 = {"type": "record", "name": "Placed", "namespace": "t.orders", "fields": []}
    files = {"t/orders/Placed.v1.avsc": v1, "t/orders/Placed.v2.avsc": placed()}

    with pytest.raises(TopologyError, match=r"keyed by field 'order_id' but t\.orders\.Placed v1"):
        load(tmp_path, files)


def test_key_field_must_be_a_string(tmp_path: Path) -> None:
    schema = placed()
    schema["fields"][0]["type"] = "long"

    with pytest.raises(TopologyError, match=r"field 'order_id' .* it is not a string"):
        load(tmp_path, {"t/orders/Placed.v1.avsc": schema})


def test_unknown_compatibility_names_the_topic(tmp_path: Path) -> None:
    catalog = TOPIC + 'compatibility = "sideways"\n'

    with pytest.raises(TopologyError, match=r"topic 't\.orders': unknown compatibility 'sideways'"):
        load(tmp_path, {"t/orders/Placed.v1.avsc": placed()}, catalog)


def test_unknown_topic_setting_is_refused(tmp_path: Path) -> None:
    catalog = TOPIC + "partition = 3\n"

    with pytest.raises(TopologyError, match=r"topic 't\.orders' has unknown key\(s\) partition"):
        load(tmp_path, {"t/orders/Placed.v1.avsc": placed()}, catalog)


def test_topic_of_an_event_no_topic_carries(tmp_path: Path) -> None:
    catalog = load(tmp_path, {"t/orders/Placed.v1.avsc": placed()})

    with pytest.raises(TopologyError, match=r"event type t\.orders\.Refunded"):
        catalog.topic_of("t.orders.Refunded")


def test_versions_of_an_unknown_event_type(tmp_path: Path) -> None:
    catalog = load(tmp_path, {"t/orders/Placed.v1.avsc": placed()})

    with pytest.raises(SchemaError, match=r"no schema for event type t\.orders\.Nope"):
        catalog.latest("t.orders.Nope")


def test_a_scheduled_flag_that_is_not_a_boolean_names_the_topic(tmp_path: Path) -> None:
    with pytest.raises(TopologyError, match=r"'t\.orders': 'scheduled' must be true or false"):
        load(tmp_path, {}, TOPIC + 'scheduled = "yes"\n')
