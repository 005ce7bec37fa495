"""Writers generated per (model, schema): a model's attributes straight into Avro bytes.

Encoding with ``model_dump`` and then fastavro's writer builds a dict per record (and per
nested record) only for fastavro to walk it again, checking each value against the schema,
a union's branches by trial validation. For a model whose dump is its attributes as they are
(no serializers but a decimal's quantizing, no excluded fields), the codec compiles one
function that reads the attributes and appends their encoding to a ``bytearray``.

The old path stays the authority: the generated writer only writes values whose encoding it
is sure of (exact types, integers in their Avro range, an enum's own members) and raises on
anything else, which makes the codec hand the event to ``model_dump`` + fastavro, so an odd
value is written, or refused, exactly as before. ``tests/unit/test_fast_writer.py`` checks
that the two write equal bytes on generated schemas and models.
"""

from __future__ import annotations

import decimal
import enum
import struct
import typing
from collections.abc import Callable
from typing import Any, get_args

from fastavro.write import LOGICAL_WRITERS
from pydantic import BaseModel

from choreo._schemas.avro import Array, AvroType, Enum, Fixed, Map, Primitive, Record, nullable
from choreo._schemas.fastread import _non_none, _unwrap
from choreo._schemas.fields import AvroDecimal
from choreo._schemas.generated import SourceCompiler

Write = Callable[[Any], bytes]

_CANONICAL = {"int": (-(2**31), 2**31 - 1), "long": (-(2**63), 2**63 - 1)}
"""What fastavro writes for an int or long field (past it, it raises or validates a union
branch away): the fast writer refuses the rest."""
_PLAIN_TYPES = {"string": "str", "bytes": "bytes", "float": "float", "double": "float"}


class _Refused(Exception):
    """Raised inside a generated writer: let ``model_dump`` + fastavro write this event."""


class _Ineligible(Exception):
    """The model's dump is not its attributes as they are; use the validating writer."""


def fast_writer(record: Record, model: type[BaseModel], header: bytes) -> Write | None:
    """A writer of ``model`` events as ``header`` + a body of ``record``, or None if the model
    is not eligible. The returned function raises on any event it does not write."""
    try:
        return _Compiler().compile(record, model, header)
    except _Ineligible:
        return None


def _long(n: int) -> bytes:
    """A zig-zag varint of two bytes or more (the generated code inlines the one-byte case);
    ``n`` is within 64 bits (the callers check)."""
    n = (n << 1) ^ (n >> 63)
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


class _Compiler(SourceCompiler):
    """Emits the source of one Python function per (model, schema) and executes it once."""

    def __init__(self) -> None:
        super().__init__(
            {
                "_long": _long,
                "_Refused": _Refused,
                "_f32": struct.Struct("<f").pack,
                "_f64": struct.Struct("<d").pack,
            }
        )

    def compile(self, record: Record, model: type[BaseModel], header: bytes) -> Write:
        body: list[str] = []
        self._record(body, record, model, "event", check=False)
        lines = ["def write(event):", f"    out = bytearray({header!r})"]
        lines += ["    " + line for line in body]
        lines.append("    return bytes(out)")
        return typing.cast(Write, self._build(lines, f"fast writer {record.name}", "write"))

    def _record(
        self, out: list[str], record: Record, model: type[BaseModel], source: str, *, check: bool
    ) -> None:
        """Lines writing one model's fields in the schema's order (a nested record inline:
        recursive schemas are refused when the catalog is loaded)."""
        _check_model(model)
        if check:  # a subclass would dump only the declared fields, or warn: leave it to pydantic
            out.append(f"if type({source}) is not {self._const(model)}:")
            out.append("    raise _Refused('not the declared model')")
        fields = self._name("d")
        out.append(f"{fields} = {source}.__dict__")
        by_alias = {info.alias or attr: (attr, info) for attr, info in model.model_fields.items()}
        for field in record.fields:
            found = by_alias.get(field.name)
            if found is None:
                raise _Ineligible(f"{model.__qualname__} has no field for {field.name}")
            attr, info = found
            value = self._name("v")
            out.append(f"{value} = {fields}[{attr!r}]")
            self._value(out, field.type, info.annotation, list(info.metadata), value)

    def _value(
        self, out: list[str], avro: AvroType, annotation: Any, metadata: list[Any], value: str
    ) -> None:
        """Lines appending the encoding of the local ``value`` of type ``avro`` to ``out``."""
        annotation, metadata = _unwrap(annotation, metadata)
        _check_metadata(metadata)
        inner, optional = nullable(avro)
        if optional:
            branches = avro.branches  # type: ignore[union-attr]
            null = branches.index(Primitive("null"))
            out.append(f"if {value} is None:")
            out.append(f"    out.append({null << 1})")
            out.append("else:")
            out.append(f"    out.append({(1 - null) << 1})")
            branch: list[str] = []
            self._value(branch, inner, _non_none(annotation), metadata, value)
            out.extend("    " + line for line in branch)
            return
        match inner:
            case Primitive(name="null"):
                out.append(f"if {value} is not None:")
                out.append("    raise _Refused('null field')")
            case Primitive(name="boolean"):
                out.append(f"if {value} is True:")
                out.append("    out.append(1)")
                out.append(f"elif {value} is False:")
                out.append("    out.append(0)")
                out.append("else:")
                out.append("    raise _Refused('boolean')")
            case Primitive(name="int" | "long" as kind, logical=None):
                self._type_check(out, value, "int")
                self._long_out(out, value, kind)
            case Primitive(name="float" | "double" as kind, logical=None):
                self._type_check(out, value, "float")
                out.append(f"out += {'_f32' if kind == 'float' else '_f64'}({value})")
            case Primitive(name="string" | "bytes" as kind, logical=None):
                self._type_check(out, value, _PLAIN_TYPES[kind])
                self._bytes_out(out, f"{value}.encode()" if kind == "string" else value)
            case Fixed(logical=None):
                self._type_check(out, value, "bytes")
                out.append(f"if len({value}) != {inner.size}:")
                out.append("    raise _Refused('fixed size')")
                out.append(f"out += {value}")
            case Primitive(logical=logical) | Fixed(logical=logical) if logical is not None:
                self._logical(out, inner, metadata, value)
            case Enum(symbols=symbols):
                if not (isinstance(annotation, type) and issubclass(annotation, enum.Enum)):
                    raise _Ineligible(f"enum field typed {annotation!r}")
                members = {annotation(s): _long(i) for i, s in enumerate(symbols)}
                self._type_check(out, value, self._const(annotation))
                out.append(f"out += {self._const(members)}[{value}]")
            case Array(items=items):
                (item_annotation,) = get_args(annotation)
                item = self._name("x")
                self._type_check(out, value, "list")
                loop = [f"for {item} in {value}:"]
                body: list[str] = []
                self._value(body, items, item_annotation, [], item)
                self._blocks(out, value, loop + ["    " + line for line in body])
            case Map(values=values):
                _, value_annotation = get_args(annotation)
                key, item = self._name("k"), self._name("x")
                self._type_check(out, value, "dict")
                loop = [f"for {key}, {item} in {value}.items():"]
                body = []
                self._type_check(body, key, "str")
                self._bytes_out(body, f"{key}.encode()")
                self._value(body, values, value_annotation, [], item)
                self._blocks(out, value, loop + ["    " + line for line in body])
            case Record():
                if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
                    raise _Ineligible(f"record field typed {annotation!r}")
                self._record(out, inner, annotation, value, check=True)
            case _:
                raise _Ineligible(f"Avro type {inner!r}")

    def _type_check(self, out: list[str], value: str, python_type: str) -> None:
        out.append(f"if type({value}) is not {python_type}:")
        out.append(f"    raise _Refused('not a {python_type}')")

    def _blocks(self, out: list[str], value: str, loop: list[str]) -> None:
        """fastavro's array and map encoding: one block of all items, unless empty, then a
        zero count."""
        count = self._name("n")
        out.append(f"{count} = len({value})")
        out.append(f"if {count}:")
        self._long_out(out, count, "long", indent="    ")
        out.extend("    " + line for line in loop)
        out.append("out.append(0)")

    def _long_out(self, out: list[str], value: str, kind: str, indent: str = "") -> None:
        """A zig-zag varint after the Avro range check, the one-byte case inline."""
        low, high = _CANONICAL[kind]
        lines = [
            f"if -64 <= {value} < 64:",
            f"    out.append(({value} << 1) ^ ({value} >> 63))",
            f"elif {low} <= {value} <= {high}:",
            f"    out += _long({value})",
            "else:",
            "    raise _Refused('integer out of range')",
        ]
        out.extend(indent + line for line in lines)

    def _bytes_out(self, out: list[str], expression: str) -> None:
        raw, size = self._name("b"), self._name("n")
        out.append(f"{raw} = {expression}")
        out.append(f"{size} = len({raw})")
        self._long_out(out, size, "long")
        out.append(f"out += {raw}")

    def _logical(
        self, out: list[str], avro: Primitive | Fixed, metadata: list[Any], value: str
    ) -> None:
        """fastavro's own converter (what its writer calls), after the decimal's quantizing
        that ``AvroDecimal`` serializes with; then the underlying type's encoding."""
        logical = avro.logical
        assert logical is not None
        kind = "fixed" if isinstance(avro, Fixed) else avro.name
        convert = LOGICAL_WRITERS.get(f"{kind}-{logical.name}")
        if convert is None:
            raise _Ineligible(f"logical type {kind}-{logical.name}")
        node: dict[str, Any] = {"type": kind, "logicalType": logical.name}
        if logical.name == "decimal":
            node |= {"precision": logical.precision, "scale": logical.scale}
            for item in metadata:
                if not isinstance(item, AvroDecimal):
                    continue
                exponent = self._const(decimal.Decimal(1).scaleb(-item.scale))
                context = self._const(decimal.Context(prec=item.precision))
                self._type_check(out, value, self._const(decimal.Decimal))
                out.append(f"{value} = {value}.quantize({exponent}, context={context})")
        raw = self._name("r")
        out.append(f"{raw} = {self._const(convert)}({value}, {self._const(node)})")
        if isinstance(avro, Fixed):
            self._value(out, Fixed(avro.name, avro.size), bytes, [], raw)
        else:
            self._value(out, Primitive(avro.name), _PYTHON[avro.name], [], raw)


_PYTHON: dict[str, Any] = {"int": int, "long": int, "string": str, "bytes": bytes}
"""What a logical type's converter returns for the underlying types it exists for."""


def _check_model(model: type[BaseModel]) -> None:
    """Refuse models whose dump is not their attributes as they are."""
    decorators = model.__pydantic_decorators__
    if decorators.field_serializers or decorators.model_serializers:
        raise _Ineligible(f"{model.__qualname__} has serializers")
    if getattr(model, "__pydantic_root_model__", False):
        raise _Ineligible(f"{model.__qualname__} is a root model")
    for name, info in model.model_fields.items():
        if info.exclude or info.serialization_alias not in (None, info.alias):
            raise _Ineligible(f"{model.__qualname__}.{name} is excluded or renamed in dumps")


def _check_metadata(metadata: list[Any]) -> None:
    """Constraints only validate; anything else in ``Annotated`` may change the dump."""
    for item in metadata:
        if not (type(item).__module__ == "annotated_types" or isinstance(item, AvroDecimal)):
            raise _Ineligible(f"annotation {item!r}")
