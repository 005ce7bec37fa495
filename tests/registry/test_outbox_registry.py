"""An outbox row of a registry-format topic holds what a direct produce sends: the registry's
framing with the schema id, readable by a plain ``AvroDeserializer`` (the relay copies the
payload column unchanged: ``tests/cdc/test_cdc_outbox.py``). Without the service's config
such an event is refused naming its topic, never written in the wrong format."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest
from builders import authorized, placed
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer
from confluent_kafka.serialization import MessageField, SerializationContext
from hypothesis import given, settings
from hypothesis import strategies as st

from choreo._config import KafkaConfig, SchemaRegistryConfig, ServiceConfig
from choreo._schemas import Catalog, Codec
from choreo._schemas.registry_setup import registry_for
from choreo._schemas.registry_wire import MAGIC
from choreo.outbox import Outbox

pytestmark = pytest.mark.stack


@pytest.fixture(scope="module")
def world(pushed_schemas: Path, schema_registry: str, kafka: str) -> tuple[Catalog, ServiceConfig]:
    config = ServiceConfig(
        kafka=KafkaConfig(bootstrap_servers=kafka),
        schema_registry=SchemaRegistryConfig(url=schema_registry),
    )
    return Catalog.load(pushed_schemas), config


@settings(max_examples=30, deadline=None)
@given(
    order_id=st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1),
    cents=st.integers(min_value=0, max_value=10**8 - 1),  # decimal(10, 2)
)
def test_a_registry_topic_row_is_what_a_direct_produce_sends(
    world: tuple[Catalog, ServiceConfig], schema_registry: str, order_id: str, cents: int
) -> None:
    catalog, config = world
    event = authorized(order_id, amount=str(Decimal(cents).scaleb(-2)))
    row = Outbox(catalog, source="payments", config=config).row(event)

    direct = Codec(catalog, registry=registry_for(config, catalog)).encode(event)
    assert row["payload"] == direct
    assert row["payload"][0] == MAGIC
    topic = catalog.topic_of(event.event_type).name
    assert row["topic"] == topic
    read = AvroDeserializer(SchemaRegistryClient({"url": schema_registry}))(
        row["payload"], SerializationContext(topic, MessageField.VALUE)
    )
    assert read["order_id"] == order_id
    assert read["amount"] == event.amount


def test_without_the_config_a_registry_topic_event_is_refused_naming_its_topic(
    world: tuple[Catalog, ServiceConfig],
) -> None:
    catalog, _ = world
    outbox = Outbox(catalog, source="payments")
    topic = catalog.topic_of(authorized("o-1").event_type).name
    with pytest.raises(Exception, match=f"topic {topic} is written in the registry wire format"):
        outbox.row(authorized("o-1"))
    # a single-object topic still writes without one
    assert outbox.row(placed("o-1"))["payload"][0] != MAGIC
