"""A typed tree view of a parsed Avro schema.

fastavro hands back nested dicts whose shape varies (a type may be a name, a list, a dict, or a
reference to a type defined earlier in the file). Code generation, model binding and the
compatibility checker all walk types, so they share this one normalised tree instead of each
re-implementing that dict juggling. Building the tree is also where the rules fastavro leaves
unchecked (identifiers, duplicate fields, union defaults, recursion) are enforced.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Final

from choreo._errors import SchemaError

NO_DEFAULT: Final = object()
"""Marks a field without a default: ``None`` is a real default (Avro null)."""

PRIMITIVES: Final = frozenset(
    {"null", "boolean", "int", "long", "float", "double", "string", "bytes"}
)

# The (underlying type, logicalType) pairs fastavro converts; any other logicalType is ignored,
# as the Avro spec requires, so the tree never claims a conversion fastavro will not do.
LOGICAL_TYPES: Final = frozenset(
    {
        ("bytes", "decimal"),
        ("fixed", "decimal"),
        ("int", "date"),
        ("int", "time-millis"),
        ("long", "time-micros"),
        ("long", "timestamp-millis"),
        ("long", "timestamp-micros"),
        ("long", "local-timestamp-millis"),
        ("long", "local-timestamp-micros"),
        ("string", "uuid"),
    }
)

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


@dataclass(frozen=True)
class Logical:
    """A logical type annotation; ``precision``/``scale`` only mean something for decimals."""

    name: str
    precision: int = 0
    scale: int = 0


@dataclass(frozen=True)
class Primitive:
    name: str
    logical: Logical | None = None


@dataclass(frozen=True)
class Fixed:
    name: str
    size: int
    aliases: tuple[str, ...] = ()
    logical: Logical | None = None


@dataclass(frozen=True)
class Enum:
    name: str
    symbols: tuple[str, ...]
    default: str | None = None
    aliases: tuple[str, ...] = ()
    doc: str | None = None


@dataclass(frozen=True)
class Array:
    items: AvroType


@dataclass(frozen=True)
class Map:
    values: AvroType


@dataclass(frozen=True)
class Union:
    branches: tuple[AvroType, ...]


@dataclass(frozen=True)
class Field:
    name: str
    type: AvroType
    default: Any = NO_DEFAULT
    aliases: tuple[str, ...] = ()
    doc: str | None = None

    @property
    def has_default(self) -> bool:
        return self.default is not NO_DEFAULT


@dataclass(frozen=True)
class Record:
    name: str
    fields: tuple[Field, ...]
    aliases: tuple[str, ...] = ()
    doc: str | None = None


AvroType = Primitive | Fixed | Enum | Array | Map | Union | Record
Named = Fixed | Enum | Record


def short_name(full_name: str) -> str:
    return full_name.rpartition(".")[2]


def nullable(avro_type: AvroType) -> tuple[AvroType, bool]:
    """Split ``["null", T]`` into ``(T, True)``; anything else is ``(type, False)``.

    Models only have ``T | None`` to express a union, so wider unions are refused here, once,
    for every consumer of the tree.
    """
    if not isinstance(avro_type, Union):
        return avro_type, False
    others = [b for b in avro_type.branches if b != Primitive("null")]
    if len(others) != 1 or len(avro_type.branches) != 2:
        raise SchemaError(
            f'union {describe(avro_type)} is not supported: only ["null", T] maps to a model'
        )
    return others[0], True


def describe(avro_type: AvroType) -> str:
    """A compact human rendering used in error messages (``decimal(10,2)``, ``array<string>``)."""
    match avro_type:
        case Primitive(name=name, logical=None) | Fixed(name=name, logical=None):
            return name
        case (
            Primitive(logical=Logical(name="decimal", precision=p, scale=s))
            | Fixed(logical=Logical(name="decimal", precision=p, scale=s))
        ):
            return f"decimal({p},{s})"
        case Primitive(logical=Logical(name=name)) | Fixed(logical=Logical(name=name)):
            return name
        case Enum(name=name) | Record(name=name):
            return name
        case Array(items=items):
            return f"array<{describe(items)}>"
        case Map(values=values):
            return f"map<{describe(values)}>"
        case Union(branches=branches):
            return "[" + ", ".join(describe(b) for b in branches) + "]"
    raise AssertionError(avro_type)


def record_from_parsed(schema: dict[str, Any], named: dict[str, Any]) -> Record:
    """Build the tree for a fastavro-parsed record.

    ``named`` is the dict fastavro filled while parsing (full name → definition); references
    are resolved through it.
    """
    root = _Builder(named).build(schema, ())
    if not isinstance(root, Record):
        raise SchemaError(f"an event schema must be a record, not {describe(root)}")
    return root


class _Builder:
    def __init__(self, named: dict[str, Any]) -> None:
        self._named = named
        self._built: dict[str, Named] = {}

    def build(self, schema: Any, stack: tuple[str, ...]) -> AvroType:
        if isinstance(schema, list):
            return Union(tuple(self.build(branch, stack) for branch in schema))
        if isinstance(schema, str):
            if schema in PRIMITIVES:
                return Primitive(schema)
            return self._reference(schema, stack)
        kind = schema["type"]
        if kind in PRIMITIVES:
            return Primitive(kind, _logical(kind, schema))
        if kind == "array":
            return Array(self.build(schema["items"], stack))
        if kind == "map":
            return Map(self.build(schema["values"], stack))
        if kind in ("record", "error", "enum", "fixed"):
            return self._named_type(schema, stack)
        return self.build(kind, stack)

    def _reference(self, name: str, stack: tuple[str, ...]) -> AvroType:
        if name in stack:
            raise SchemaError(f"recursive type {name} is not supported")
        if name in self._built:
            return self._built[name]
        return self._named_type(self._named[name], stack)

    def _named_type(self, schema: dict[str, Any], stack: tuple[str, ...]) -> Named:
        name: str = schema["name"]
        _check_full_name(name)
        aliases = tuple(schema.get("aliases", ()))
        built: Named
        if schema["type"] == "enum":
            for symbol in schema["symbols"]:
                _check_identifier(symbol, f"symbol of enum {name}")
            symbols = tuple(schema["symbols"])
            built = Enum(name, symbols, schema.get("default"), aliases, _doc(schema))
        elif schema["type"] == "fixed":
            built = Fixed(name, schema["size"], aliases, _logical("fixed", schema))
        else:
            fields = tuple(self._field(name, f, (*stack, name)) for f in schema["fields"])
            seen: set[str] = set()
            for field in fields:
                if field.name in seen:
                    raise SchemaError(f"record {name} has two fields named '{field.name}'")
                seen.add(field.name)
            built = Record(name, fields, aliases, _doc(schema))
        self._built[name] = built
        return built

    def _field(self, record: str, schema: dict[str, Any], stack: tuple[str, ...]) -> Field:
        name: str = schema["name"]
        _check_identifier(name, f"field of record {record}")
        field_type = self.build(schema["type"], stack)
        default = schema.get("default", NO_DEFAULT)
        if (
            isinstance(field_type, Union)
            and default is None
            and field_type.branches[0] != Primitive("null")
        ):
            raise SchemaError(
                f"field '{name}' of record {record} defaults to null, so 'null' must be the "
                "first branch of its union"
            )
        return Field(name, field_type, default, tuple(schema.get("aliases", ())), _doc(schema))


def _logical(kind: str, schema: dict[str, Any]) -> Logical | None:
    name = schema.get("logicalType")
    if (kind, name) not in LOGICAL_TYPES:
        return None
    return Logical(str(name), schema.get("precision", 0), schema.get("scale", 0))


def _doc(schema: dict[str, Any]) -> str | None:
    return str(schema.get("doc") or "").strip() or None


def _check_full_name(name: str) -> None:
    for part in name.split("."):
        _check_identifier(part, "name part")


def _check_identifier(name: str, what: str) -> None:
    if not _NAME.match(name):
        raise SchemaError(f"'{name}' is not a valid Avro {what}: use [A-Za-z_][A-Za-z0-9_]*")
