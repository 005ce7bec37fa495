"""The generated fast readers against the validating path (fastavro + pydantic).

For the repo's schemas (every writer/reader version pair) and for generated schemas of every
supported type, with values inside and outside what the models accept (32-bit bounds,
decimal digits, timestamp ranges, malformed UUIDs) and with damaged bytes: the codec with fast
readers must build an equal model (same repr, so the same types: enum members, decimal
exponents, time zones) or refuse with the same reason and message as ``Codec(fast=False)``.
And the fast reader alone must never accept a record the validating path refuses.
"""

from __future__ import annotations

import functools
import io
import json
import uuid
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Annotated, Any, ClassVar

import pytest
from fastavro import parse_schema, schemaless_writer
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from pydantic import Field, field_serializer, field_validator
from test_schemas_codec import make_catalog
from test_schemas_codegen import import_source as _import

from choreo._errors import DecodeError, SchemaError
from choreo._schemas import Catalog, Codec, Event, payloads
from choreo._schemas.avro import Array, AvroType, Enum, Fixed, Map, Primitive, Record, Union
from choreo._schemas.codec import HEADER_SIZE, MAGIC
from choreo._schemas.codegen import generate
from choreo._schemas.fastread import fast_payload_reader, fast_reader
from choreo._schemas.layout import SchemaVersion

ROOT = Path(__file__).resolve().parents[2]
REPO = Catalog.load(ROOT / "schemas")
SETTINGS = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.function_scoped_fixture,  # each example writes its own directory
    ],
    derandomize=True,
)
Outcome = tuple[str, ...]


def outcome(codec: Codec, data: bytes, model: type[Event]) -> Outcome:
    """What a consumer sees: the model (repr and fields set) or the refusal."""
    try:
        event = codec.decode(data, model)
    except DecodeError as error:
        return ("refused", error.reason, str(error))
    return ("event", repr(event), repr(sorted(event.__pydantic_fields_set__)))


def avro_values(avro: AvroType, depth: int = 0) -> st.SearchStrategy[Any]:
    """Values fastavro's writer takes for ``avro``, some outside what models accept."""
    match avro:
        case Union(branches=branches):
            return st.one_of(*(avro_values(branch, depth) for branch in branches))
        case Primitive(name="null"):
            return st.none()
        case Primitive(name="boolean"):
            return st.booleans()
        case Primitive(name="int", logical=None):
            edges = [2**31 - 1, 2**31, -(2**31), -(2**31) - 1, 2**40, -(2**63)]
            return st.one_of(st.integers(-(2**31), 2**31 - 1), st.sampled_from(edges))
        case Primitive(name="long", logical=None):
            return st.integers(-(2**63), 2**63 - 1)
        case Primitive(name="float" | "double"):
            return st.floats(width=32 if avro.name == "float" else 64)
        case Primitive(name="string", logical=None):
            return st.text(max_size=12)
        case Primitive(name="bytes", logical=None):
            return st.binary(max_size=12)
        case Primitive(logical=logical) | Fixed(logical=logical) if logical is not None:
            return _logical_values(avro, logical.name, logical.precision, logical.scale)
        case Fixed(size=size):
            return st.binary(min_size=size, max_size=size)
        case Enum(symbols=symbols):
            return st.sampled_from(symbols)
        case Array(items=items):
            return st.lists(avro_values(items, depth + 1), max_size=3)
        case Map(values=values):
            return st.dictionaries(st.text(max_size=4), avro_values(values, depth + 1), max_size=3)
        case Record(fields=fields):
            return st.fixed_dictionaries({f.name: avro_values(f.type, depth + 1) for f in fields})
    raise AssertionError(avro)


def _logical_values(
    avro: Primitive | Fixed, name: str, precision: int, scale: int
) -> st.SearchStrategy[Any]:
    match name:
        case "decimal":  # the unscaled bytes, so more digits than the precision can be sent
            size = getattr(avro, "size", 16)
            limit = min(10 ** (precision + 1), 2 ** (8 * size - 1) - 1)
            edges = [10**precision - 1, 10**precision, -(10**precision), limit, -limit]
            edges = [edge for edge in edges if abs(edge) <= limit]
            unscaled = st.one_of(st.integers(-limit, limit), st.sampled_from(edges))
            return unscaled.map(
                lambda unscaled: unscaled.to_bytes(
                    size if isinstance(avro, Fixed) else (unscaled.bit_length() + 8) // 8,
                    "big",
                    signed=True,
                )
            )
        case "timestamp-millis" | "local-timestamp-millis":
            return st.integers(-(2**46), 2**46)  # past year 9999 sometimes
        case "timestamp-micros" | "local-timestamp-micros":
            return st.integers(-(2**56), 2**56)
        case "date":
            return st.integers(-800_000, 3_000_000)
        case "time-millis":
            return st.integers(-10, 86_400_010)
        case "time-micros":
            return st.integers(-10, 86_400_000_010)
        case "uuid":
            return st.one_of(st.uuids().map(str), st.text(max_size=8))
    raise AssertionError(name)


def encode(version: SchemaVersion, value: dict[str, Any]) -> bytes | None:
    """Bytes as a foreign producer writes them; None if fastavro refuses the value."""
    out = io.BytesIO()
    out.write(MAGIC + version.fingerprint)
    try:
        schemaless_writer(out, _undecimal(version), value)
    except (ValueError, TypeError, OverflowError):
        return None
    return out.getvalue()


@functools.cache
def _undecimal(version: SchemaVersion) -> Any:
    """The writer schema as a foreign producer may use it: decimals as their plain bytes and
    ints as longs (the same varint), so values past a decimal's precision or 32 bits can be
    sent; fastavro's writer would refuse them."""

    def loosen(node: Any) -> Any:
        if node == "int":
            return "long"
        if isinstance(node, list):
            return [loosen(item) for item in node]
        if not isinstance(node, dict):
            return node
        node = {
            k: loosen(v) if k in ("type", "items", "values", "fields") else v
            for k, v in node.items()
        }
        if node.get("logicalType") == "decimal":
            del node["logicalType"]
        return node

    return parse_schema(loosen(json.loads(version.path.read_text())))


def models_for(version: SchemaVersion, root: Path) -> ModuleType:
    """The generated models of a catalog holding ``version`` as its latest."""
    target = root / f"only_{uuid.uuid4().hex}"
    namespace, _, name = version.event_type.rpartition(".")
    folder = target / "schemas" / namespace.replace(".", "/")
    folder.mkdir(parents=True)
    (folder / f"{name}.v1.avsc").write_text(version.path.read_text())
    key = REPO.topic_of(version.event_type).key
    topic = f'[topics."{namespace}"]\nevents = ["{version.event_type}"]\nkey = "{key}"\n'
    (target / "schemas" / "catalog.toml").write_text(topic)
    schemas = target / "schemas"
    return _import(generate(Catalog.load(schemas)), target)


def payload_outcome(codec: Codec, data: bytes, model: type[Event]) -> Outcome:
    """What a saga tracker stores: the payload read twice (the second time by the reader
    generated for its version, if any), or the refusal."""
    decode = codec.payload_decoder(model)
    try:
        first = decode(data)
    except DecodeError as error:
        return ("refused", error.reason, str(error))
    return ("payload", repr(first), repr(decode(data)))


def check_equivalent(
    catalog: Catalog, data: bytes, model: type[Event], record: Record | None
) -> Outcome:
    """The fast codec and the validating one agree, on models and on the payloads a saga state
    stores (their JSON values, with the same types: ``repr``); the readers generated for
    ``record`` (the writer's, when it is the model's version) accept nothing more."""
    reference = Codec(catalog, fast=False)
    expected = outcome(reference, data, model)
    assert outcome(Codec(catalog), data, model) == expected
    stored = payload_outcome(reference, data, model)
    if stored[0] == "payload":
        assert stored[1] == stored[2] == repr(payloads.dump(reference.decode(data, model)))
    assert payload_outcome(Codec(catalog), data, model) == stored
    if record is None:
        return expected
    readers = (
        (fast_reader(record, model, HEADER_SIZE), expected[1]),
        (fast_payload_reader(record, model, HEADER_SIZE), stored[1]),
    )
    for read, verdict in readers:
        if read is None:
            continue
        try:
            built = read(data)
        except Exception:  # handed to the validating reader, whose verdict is checked above
            continue
        assert expected[0] == "event", f"a fast reader accepted what validation refuses: {data!r}"
        assert repr(built) == verdict
    return expected


# --- the repo's schemas: every event type, every writer/reader version pair --------------------

PAIRS = [
    (writer, reader)
    for event_type in REPO.event_types
    for writer in REPO.versions(event_type)
    for reader in REPO.versions(event_type)
]


@pytest.fixture(scope="module")
def repo_models(tmp_path_factory: pytest.TempPathFactory) -> dict[SchemaVersion, type[Event]]:
    root = tmp_path_factory.mktemp("repo-models")
    found = {}
    for event_type in REPO.event_types:
        for version in REPO.versions(event_type):
            module = models_for(version, root)
            found[version] = next(
                m
                for m in vars(module).values()
                if isinstance(m, type) and getattr(m, "event_type", None) == event_type
            )
    return found


@SETTINGS
@given(data=st.data())
def test_repo_schemas_every_version_pair(
    repo_models: dict[SchemaVersion, type[Event]], data: st.DataObject
) -> None:
    writer, reader = data.draw(st.sampled_from(PAIRS), label="writer, reader")
    value = encode(writer, data.draw(avro_values(writer.record), label="value"))
    if value is None:
        return
    model = repo_models[reader]
    check_equivalent(REPO, value, model, reader.record if writer is reader else None)


def test_every_repo_model_reads_fast(repo_models: dict[SchemaVersion, type[Event]]) -> None:
    """Into models and into saga payloads."""
    for reader in (fast_reader, fast_payload_reader):
        refused = [v.label for v, m in repo_models.items() if reader(v.record, m, 10) is None]
        assert not refused, reader.__name__


# --- generated schemas: every supported type, nested ---------------------------------------------


def _leaf_schemas() -> st.SearchStrategy[Any]:
    decimal = st.integers(1, 30).flatmap(
        lambda p: st.integers(0, p).map(
            lambda s: {"type": "bytes", "logicalType": "decimal", "precision": p, "scale": s}
        )
    )
    logical = st.sampled_from(
        [
            {"type": "long", "logicalType": kind}
            for kind in (
                "timestamp-millis",
                "timestamp-micros",
                "local-timestamp-millis",
                "local-timestamp-micros",
                "time-micros",
            )
        ]
        + [{"type": "int", "logicalType": kind} for kind in ("date", "time-millis")]
        + [{"type": "string", "logicalType": "uuid"}]
    )
    primitive = st.sampled_from(["boolean", "long", "float", "double", "string", "bytes", "null"])
    # ints and decimals first: their bounds are what the fast readers check themselves
    return st.one_of(st.just("int"), decimal, primitive, logical)


class _Names:
    """Unique names for the named types of one generated schema."""

    def __init__(self) -> None:
        self.count = 0

    def next(self, prefix: str) -> str:
        self.count += 1
        return f"{prefix}{self.count}"


def _type_schema(names: _Names, depth: int) -> st.SearchStrategy[Any]:
    leaf = _leaf_schemas()
    if depth >= 2:
        return leaf
    inner = st.deferred(lambda: _type_schema(names, depth + 1))
    return st.one_of(
        leaf,
        leaf.map(lambda t: ["null", t] if t != "null" else t),
        st.builds(lambda t: {"type": "array", "items": t}, inner),
        st.builds(lambda t: {"type": "map", "values": t}, inner),
        st.integers(1, 4).map(
            lambda n: {
                "type": "enum",
                "name": names.next("E"),
                "symbols": [f"S{i}" for i in range(n)],
            }
        ),
        st.integers(1, 9).map(lambda n: {"type": "fixed", "name": names.next("F"), "size": n}),
        st.lists(inner, min_size=1, max_size=3).map(
            lambda types: {
                "type": "record",
                "name": names.next("R"),
                "fields": [{"name": f"g{i}", "type": t} for i, t in enumerate(types)],
            }
        ),
    )


@st.composite
def event_schemas(draw: st.DrawFn) -> dict[str, Any]:
    names = _Names()
    types = draw(st.lists(_type_schema(names, 0), min_size=1, max_size=5))
    fields = [{"name": "k", "type": "string"}]  # the topic's key
    fields += [{"name": f"f{i}", "type": t} for i, t in enumerate(types)]
    return {"type": "record", "name": "Gen", "namespace": "g.x", "fields": fields}


def generated_event(
    schema: dict[str, Any], tmp_path: Path
) -> tuple[Catalog, SchemaVersion, type[Event]]:
    """A catalog holding only ``schema`` (as ``g.x.Gen``), its version and its generated model,
    in a fresh folder per hypothesis example (``tmp_path`` is shared by all of them)."""
    root = tmp_path / uuid.uuid4().hex
    (root / "schemas" / "g" / "x").mkdir(parents=True)
    (root / "schemas" / "g" / "x" / "Gen.v1.avsc").write_text(json.dumps(schema))
    (root / "schemas" / "catalog.toml").write_text(
        '[topics."g.x"]\nevents = ["g.x.Gen"]\nkey = "k"\n'
    )
    catalog = Catalog.load(root / "schemas")
    model: type[Event] = _import(generate(catalog), root).Gen
    try:
        Codec(catalog).register(model)
    except SchemaError:  # binding refuses a few generated models (an array of nulls): not ours
        assume(False)
    return catalog, catalog.latest("g.x.Gen"), model


@SETTINGS
@given(schema=event_schemas(), data=st.data())
def test_generated_schemas(schema: dict[str, Any], data: st.DataObject, tmp_path: Path) -> None:
    catalog, version, model = generated_event(schema, tmp_path)
    fast = fast_reader(version.record, model, HEADER_SIZE)
    assert fast is not None
    for value in data.draw(st.lists(avro_values(version.record), min_size=1, max_size=4)):
        encoded = encode(version, value)
        if encoded is not None:
            check_equivalent(catalog, encoded, model, version.record)


PAYLOAD_FIELDS = {
    "k": "string",
    "utc_ms": {"type": "long", "logicalType": "timestamp-millis"},
    "utc_us": {"type": "long", "logicalType": "timestamp-micros"},
    "local_ms": {"type": "long", "logicalType": "local-timestamp-millis"},
    "local_us": {"type": "long", "logicalType": "local-timestamp-micros"},
    "day": {"type": "int", "logicalType": "date"},
    "tiny": {"type": "bytes", "logicalType": "decimal", "precision": 12, "scale": 10},
    "money": {"type": "bytes", "logicalType": "decimal", "precision": 10, "scale": 2},
    "id": {"type": "string", "logicalType": "uuid"},
    "blob": "bytes",
    "kind": {"type": "enum", "name": "Kind", "symbols": ["A", "b_2"]},
}
"""Every value a saga payload writes as text, in one record: what the generated schemas above
meet too rarely for their shapes (fractions under 0.1 s, decimals written with an exponent,
UUIDs in other spellings, times around the epoch)."""


@pytest.fixture(scope="module")
def payload_event(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[Catalog, SchemaVersion, type[Event]]:
    schema = {
        "type": "record",
        "name": "Gen",
        "namespace": "g.x",
        "fields": [{"name": name, "type": kind} for name, kind in PAYLOAD_FIELDS.items()],
    }
    return generated_event(schema, tmp_path_factory.mktemp("payload"))


def _near(unit: int) -> st.SearchStrategy[int]:
    """Timestamps in ``unit`` per second: around now and the epoch, any fraction."""
    seconds = st.sampled_from([0, -1, 1_764_936_000, -62_135_596_800]) | st.integers(
        -(2**35), 2**35
    )
    return st.builds(lambda s, f: s * unit + f, seconds, st.integers(0, unit - 1))


@settings(max_examples=400, deadline=None, derandomize=True)
@given(
    value=st.fixed_dictionaries(
        {
            "k": st.just("key"),
            "utc_ms": _near(1000),
            "utc_us": _near(1_000_000),
            "local_ms": _near(1000),
            "local_us": _near(1_000_000),
            "day": st.integers(-800_000, 3_000_000),
            "tiny": st.integers(-(10**13), 10**13).map(lambda u: u.to_bytes(8, "big", signed=True)),
            "money": st.integers(-(10**11), 10**11).map(
                lambda u: u.to_bytes(8, "big", signed=True)
            ),
            "id": st.uuids().map(lambda u: str(u).upper() if u.int % 3 == 0 else str(u))
            | st.text(max_size=40),
            "blob": st.binary(max_size=8),
            "kind": st.sampled_from(["A", "b_2"]),
        }
    )
)
def test_payload_reader_writes_what_pydantic_writes(
    payload_event: tuple[Catalog, SchemaVersion, type[Event]], value: dict[str, Any]
) -> None:
    catalog, version, model = payload_event
    assert fast_payload_reader(version.record, model, HEADER_SIZE) is not None
    encoded = encode(version, value)
    if encoded is not None:
        check_equivalent(catalog, encoded, model, version.record)


# --- damaged bytes: cuts, flips, insertions ------------------------------------------------------


@st.composite
def damaged(draw: st.DrawFn, good: bytes) -> bytes:
    data = bytearray(good)
    for _ in range(draw(st.integers(1, 3))):
        at = draw(st.integers(HEADER_SIZE, len(data)))
        match draw(st.sampled_from(["cut", "flip", "insert"])):
            case "cut":
                del data[at:]
            case "flip" if at < len(data):
                data[at] = draw(st.integers(0, 255))
            case _:
                data[at:at] = draw(st.binary(min_size=1, max_size=4))
    return bytes(data)


@SETTINGS
@given(data=st.data())
def test_damaged_records(
    repo_models: dict[SchemaVersion, type[Event]], data: st.DataObject
) -> None:
    event_type = data.draw(st.sampled_from(REPO.event_types), label="event type")
    version = REPO.latest(event_type)
    good = encode(version, data.draw(avro_values(version.record), label="value"))
    if good is None:
        return
    model = repo_models[version]
    check_equivalent(REPO, data.draw(damaged(good)), model, version.record)


# --- models whose validation does more than the schema ------------------------------------------

CATALOG_TOML = '[topics."t.orders"]\nevents = ["t.orders.Placed"]\nkey = "order_id"\n'
PLACED = {
    "type": "record",
    "name": "Placed",
    "namespace": "t.orders",
    "fields": [
        {"name": "order_id", "type": "string"},
        {"name": "quantity", "type": "int"},
    ],
}


class Validated(Event):
    event_type: ClassVar[str] = "t.orders.Placed"
    order_id: str
    quantity: int

    @field_validator("order_id")
    @classmethod
    def _upper(cls, value: str) -> str:
        return value.upper()


class Constrained(Event):
    event_type: ClassVar[str] = "t.orders.Placed"
    order_id: Annotated[str, Field(min_length=3)]
    quantity: int


class Bounded(Event):
    event_type: ClassVar[str] = "t.orders.Placed"
    order_id: str
    quantity: Annotated[int, Field(gt=0, le=10)]


@pytest.mark.parametrize(
    ("model", "fast_expected"), [(Validated, False), (Constrained, False), (Bounded, True)]
)
@pytest.mark.parametrize(
    "value", [{"order_id": "ab", "quantity": 0}, {"order_id": "abcd", "quantity": 5}]
)
def test_hand_written_models(
    tmp_path: Path, model: type[Event], fast_expected: bool, value: dict[str, Any]
) -> None:
    """Validators and constraints the module does not know leave the model on the validating
    path; integer bounds it checks itself."""
    catalog = make_catalog(tmp_path, {"t/orders/Placed.v1.avsc": PLACED}, CATALOG_TOML)
    version = catalog.latest("t.orders.Placed")
    fast = fast_reader(version.record, model, HEADER_SIZE)
    assert (fast is not None) == fast_expected
    encoded = encode(version, value)
    assert encoded is not None
    check_equivalent(catalog, encoded, model, version.record)


class LeftOut(Event):
    """Its JSON leaves a field out by value (``exclude_if``): the payload reader must too."""

    event_type: ClassVar[str] = "t.orders.Placed"
    order_id: str
    quantity: int = Field(exclude_if=lambda quantity: quantity == 0)


class Unwritable(Event):
    """Its own serializer fails on some values."""

    event_type: ClassVar[str] = "t.orders.Placed"
    order_id: str
    quantity: int

    @field_serializer("quantity")
    def _only_small(self, quantity: int) -> int:
        if quantity > 3:
            raise ValueError("too many to write")
        return quantity


def test_payloads_follow_the_models_own_json(tmp_path: Path) -> None:
    """A field left out by value reads as the model's JSON leaves it out, whichever reader
    reads it; a model whose serializer fails is dead-lettered as ``invalid``, not raised."""
    catalog = make_catalog(tmp_path, {"t/orders/Placed.v1.avsc": PLACED}, CATALOG_TOML)
    version = catalog.latest("t.orders.Placed")
    assert fast_payload_reader(version.record, LeftOut, HEADER_SIZE) is None
    decode = Codec(catalog).payload_decoder(LeftOut)
    for quantity in (0, 0, 2, 0):
        encoded = encode(version, {"order_id": "o-1", "quantity": quantity})
        assert encoded is not None
        expected = {"order_id": "o-1"} if quantity == 0 else {"order_id": "o-1", "quantity": 2}
        assert decode(encoded) == expected
    unwritable = Codec(catalog).payload_decoder(Unwritable)
    encoded = encode(version, {"order_id": "o-1", "quantity": 5})
    assert encoded is not None
    with pytest.raises(DecodeError) as refused:
        unwritable(encoded)
    assert refused.value.reason == "invalid"


# --- Codec.decoder: a reader per writer version kept at hand ------------------------------------


def _seen(decode: Callable[[bytes | None], Any], data: bytes | None) -> Outcome:
    try:
        event = decode(data)
    except Exception as error:
        return ("refused", type(error).__name__, getattr(error, "reason", ""), str(error))
    return ("event", repr(event), repr(sorted(event.__pydantic_fields_set__)))


@SETTINGS
@given(data=st.data())
def test_bound_decoder_agrees_with_decode(
    repo_models: dict[SchemaVersion, type[Event]], data: st.DataObject
) -> None:
    """``Codec.decoder(model)`` skips ``decode``'s checks for a version it read before: for
    good, damaged, oversized, foreign and missing bytes of any writer version, before and
    after it holds that version's reader, it must return or raise what ``decode`` does."""
    event_type = data.draw(st.sampled_from(sorted(REPO.event_types)), label="event type")
    versions = REPO.versions(event_type)
    model = repo_models[data.draw(st.sampled_from(versions), label="reader")]
    limit = data.draw(st.integers(HEADER_SIZE, 400), label="max_bytes")
    inputs: list[bytes | None] = [None, data.draw(st.binary(max_size=40), label="foreign")]
    for writer in data.draw(st.lists(st.sampled_from(versions), min_size=1, max_size=3)):
        good = encode(writer, data.draw(avro_values(writer.record), label="value"))
        if good is not None:
            inputs += [good, data.draw(damaged(good), label="damaged")]
    bound = Codec(REPO, max_bytes=limit).decoder(model)
    reference = Codec(REPO, max_bytes=limit)
    for given_bytes in data.draw(st.permutations(inputs * 2), label="order"):
        expected = _seen(lambda value: reference.decode(value, model), given_bytes)
        assert _seen(bound, given_bytes) == expected
