"""``wire_format`` in ``catalog.toml``: its default, a wrong value, a registry topic written
without a registry, and ``choreo.testing`` on registry topics (no stack needed)."""

from __future__ import annotations

from pathlib import Path

import pytest
from builders import placed, reserved
from conftest import copy_schemas

from choreo._config import load_config
from choreo._errors import ConfigError, TopologyError
from choreo._schemas import Catalog, Codec
from choreo._schemas.catalog import DEFAULT_WIRE_FORMAT
from choreo._schemas.registry_setup import registry_for
from choreo.testing import TestService
from services.events import OrderPlaced, PaymentAuthorized


def test_topics_default_to_single_object_and_a_registry_topic_needs_a_registry(
    tmp_path: Path,
) -> None:
    catalog = Catalog.load(copy_schemas(tmp_path / "schemas", ("shop.inventory",)))
    formats = {name.rsplit(".", 1)[0]: spec.wire_format for name, spec in catalog.topics.items()}
    assert DEFAULT_WIRE_FORMAT == "single-object"
    assert formats.pop("shop.inventory") == "registry"
    assert set(formats.values()) == {"single-object"}
    codec = Codec(catalog)
    assert codec.encode(placed("o-1"))[:2] == b"\xc3\x01"
    with pytest.raises(ConfigError, match=r"topic shop\.inventory\.\w+ is written in the registry"):
        codec.encode(reserved("o-1"))


def test_an_unknown_wire_format_names_the_topic(tmp_path: Path) -> None:
    schemas = copy_schemas(tmp_path / "schemas", ("shop.fraud",))
    catalog = schemas / "catalog.toml"
    catalog.write_text(catalog.read_text().replace('"registry"', '"confluent"'))
    wrong = r"topic 'shop\.fraud\.\w+': unknown wire_format 'confluent'"
    with pytest.raises(TopologyError, match=wrong):
        Catalog.load(schemas)


def test_unit_tests_of_a_registry_topic_service_need_no_registry(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import registry_service

    monkeypatch.setattr(registry_service, "LEDGER", str(tmp_path / "ledger.txt"))
    schemas = copy_schemas(tmp_path / "schemas", ("shop.orders", "shop.payments"))
    with TestService(registry_service.svc, schemas=schemas) as test:
        test.send(placed("o-7"))
        [payment] = test.emitted(PaymentAuthorized)
        payments = test.catalog.topic_of(PaymentAuthorized.event_type).name
        orders = test.catalog.topic_of(OrderPlaced.event_type).name
        assert [r.value[0] for r in test.records(payments) if r.value] == [0]
        assert [r.value[0] for r in test.records(orders) if r.value] == [0]
        assert test.dead_letters(orders) == []
    assert payment.order_id == "o-7"
    assert (tmp_path / "ledger.txt").read_text().split()[0] == "o-7"


def test_only_a_registry_topic_or_a_registry_setting_makes_a_service_use_one(
    tmp_path: Path,
) -> None:
    plain = Catalog.load(copy_schemas(tmp_path / "plain", ()))
    writing = Catalog.load(copy_schemas(tmp_path / "writing", ("shop.fraud",)))
    url = {"CHOREO_SCHEMA_REGISTRY__URL": "http://127.0.0.1:1/apis/ccompat/v7"}
    assert registry_for(load_config(environ={}), plain) is None
    assert registry_for(load_config(environ={}), writing) is not None
    configured = registry_for(load_config(environ=url), plain)
    assert configured is not None
    assert configured.client.url == url["CHOREO_SCHEMA_REGISTRY__URL"]
