"""Registry-framed bytes of every shape, decoded against the stack's registry: each one is an
event or a ``DecodeError`` whose reason a dead letter can carry, never another exception; and
ids resolved once keep decoding while the registry is down."""

from __future__ import annotations

import socket
import uuid
from pathlib import Path

import pytest
from builders import placed
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from choreo._errors import DecodeError
from choreo._schemas import Catalog, Codec
from choreo._schemas.registry_client import RegistryClient
from choreo._schemas.registry_wire import RegistrySchemas, frame
from services.events import OrderPlaced

pytestmark = pytest.mark.stack
REASONS = {
    "unknown-schema-id",
    "unknown-fingerprint",
    "registry-unavailable",
    "truncated",
    "not-avro",
    "invalid",
    "wrong-type",
    "incompatible",
}
"""What a registry-framed record that is not an OrderPlaced may be parked as."""


@pytest.fixture(scope="module")
def framing(schema_registry: str, pushed_schemas: Path) -> tuple[Codec, bytes]:
    """A codec reading through the registry, and one good registry-framed OrderPlaced."""
    catalog = Catalog.load(pushed_schemas)
    registry = RegistrySchemas(RegistryClient(schema_registry, 10.0), catalog)
    placed_id = registry.id_of(catalog.latest(OrderPlaced.event_type))
    single = Codec(catalog).encode(placed("o-1"))
    return Codec(catalog, registry=registry), frame(placed_id) + single[10:]


def _decode(codec: Codec, data: bytes) -> None:
    for attempt in (lambda: codec.decode(data, OrderPlaced), lambda: codec.event_type_of(data)):
        try:
            attempt()
        except DecodeError as error:
            assert error.reason in REASONS, (error.reason, str(error), data)
            assert str(error)


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_any_registry_framed_bytes_decode_or_fail_with_a_reason(
    framing: tuple[Codec, bytes], data: st.DataObject
) -> None:
    codec, good = framing
    shape = data.draw(st.sampled_from(["any", "known id", "truncated", "unknown id"]))
    if shape == "any":
        value = b"\x00" + data.draw(st.binary(max_size=40))
    elif shape == "known id":
        value = good[:5] + data.draw(st.binary(max_size=80))
    elif shape == "truncated":
        value = good[: data.draw(st.integers(1, len(good) - 1))]
    else:
        unknown = data.draw(st.integers(2**30, 2**31 - 1))
        value = frame(unknown) + good[5:]
    _decode(codec, value)


def test_the_good_record_decodes_and_an_unknown_id_has_its_own_reason(
    framing: tuple[Codec, bytes],
) -> None:
    codec, good = framing
    assert codec.decode(good, OrderPlaced) == placed("o-1")
    with pytest.raises(DecodeError) as caught:
        codec.decode(frame(2**31 - 7) + good[5:], OrderPlaced)
    assert caught.value.reason == "unknown-schema-id"
    assert str(2**31 - 7) in str(caught.value)


def test_resolved_ids_keep_decoding_while_the_registry_is_down(
    schema_registry: str, pushed_schemas: Path
) -> None:
    catalog = Catalog.load(pushed_schemas)
    registry = RegistrySchemas(RegistryClient(schema_registry, 2.0), catalog)
    codec = Codec(catalog, registry=registry)
    good = frame(registry.id_of(catalog.latest(OrderPlaced.event_type)))
    good += Codec(catalog).encode(placed("o-2"))[10:]
    assert codec.decode(good, OrderPlaced).order_id == "o-2"

    with socket.socket() as sock:  # the registry "moves" to a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        registry.client.url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    for _ in range(3):
        assert codec.decode(good, OrderPlaced).order_id == "o-2"
    asked: list[int] = []
    ask = registry.client.schema
    registry.client.schema = lambda schema_id: asked.append(schema_id) or ask(schema_id)  # type: ignore[method-assign]
    other = frame(2**31 - 11) + good[5:]
    for _ in range(3):  # asked once, then refused from memory until RETRY_AFTER_S
        with pytest.raises(DecodeError) as caught:
            codec.decode(other, OrderPlaced)
        assert caught.value.reason == "registry-unavailable"
        assert registry.client.url in str(caught.value)
    assert asked == [2**31 - 11]


def test_a_writer_schema_the_catalog_lacks_is_parked_naming_it(
    framing: tuple[Codec, bytes], schema_registry: str
) -> None:
    """A Java team's own schema (registered by them, not by ``push``): the repo decides."""
    codec = framing[0]
    theirs = '{"type":"record","name":"Theirs","namespace":"java.team","fields":[]}'
    schema_id = RegistryClient(schema_registry, 10.0).register(f"theirs-{uuid.uuid4()}", theirs)
    with pytest.raises(DecodeError) as caught:
        codec.decode(frame(schema_id), OrderPlaced)
    assert caught.value.reason == "unknown-fingerprint"
    assert f"schema id {schema_id}" in str(caught.value)
    assert "java.team.Theirs" in str(caught.value)
