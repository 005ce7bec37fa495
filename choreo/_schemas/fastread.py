"""Readers generated per (schema, model): Avro bytes straight into the model, no pydantic pass.

Decoding with fastavro into dicts and then validating the dicts into models does the work
twice: most of what pydantic checks (types, required fields, enum symbols, nested records)
the Avro encoding already guarantees for a record written with the reader's own schema. So
for a model whose validation checks nothing beyond the schema plus the constraints this
module knows (integer bounds, a decimal's digits), the codec compiles a reader that walks the
bytes once, checks exactly those constraints and builds the models without validation.

The validating reader stays the authority: the fast reader only ever *accepts* what it is
sure the validating one would accept with an equal result, and anything else (a failed
bound, odd bytes, a value out of the canonical range) makes it hand the record to the
validating reader, which returns the same model or raises the error (and the dead-letter
reason) it always raised. ``tests/unit/test_fast_reader.py`` checks that equivalence on
generated schemas, models and byte strings.
"""

from __future__ import annotations

import datetime
import decimal
import enum
import re
import struct
import typing
from collections.abc import Callable
from typing import Annotated, Any, get_args, get_origin

import annotated_types
from fastavro.read import LOGICAL_READERS
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from choreo._schemas.avro import Array, AvroType, Enum, Fixed, Map, Primitive, Record, nullable
from choreo._schemas.fields import AvroDecimal
from choreo._schemas.generated import SourceCompiler

Read = Callable[[bytes], Any]

_CONFIG_KEYS = frozenset({"frozen", "extra", "title"})
"""Model settings that change nothing about what validation accepts or builds."""
_BOUNDS = {
    annotated_types.Ge: ("ge", 0),
    annotated_types.Gt: ("gt", 1),
    annotated_types.Le: ("le", 0),
    annotated_types.Lt: ("lt", -1),
}
"""Integer bounds a model may carry: the attribute holding the bound, and what turns it into
an inclusive one."""
_UTC_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)
_EPOCHS = {
    "timestamp-millis": _UTC_EPOCH,
    "timestamp-micros": _UTC_EPOCH,
    "local-timestamp-millis": _UTC_EPOCH.replace(tzinfo=None),
    "local-timestamp-micros": _UTC_EPOCH.replace(tzinfo=None),
}
_CANONICAL_UUID = re.compile(
    "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
).fullmatch
"""A UUID's text as ``str(UUID(...))`` writes it."""
_CANONICAL = {"int": (-(2**31), 2**31 - 1), "long": (-(2**63), 2**63 - 1)}
"""Values the validating path can get from fastavro without wrapping; others go to it."""


class _Refused(Exception):
    """Raised inside a generated reader: let the validating reader decide this record."""


class _Ineligible(Exception):
    """The model validates something this module cannot check; use the validating reader."""


def fast_reader(record: Record, model: type[BaseModel], header_size: int) -> Read | None:
    """A reader of bodies written with ``record`` into ``model``, or None if not eligible.

    The returned function raises on any record it does not accept (it never returns a model
    the validating path would refuse); the caller falls back to the validating reader.
    """
    try:
        return _Compiler().compile(record, model, header_size)
    except _Ineligible:
        return None


def fast_payload_reader(record: Record, model: type[BaseModel], header_size: int) -> Read | None:
    """A reader of bodies written with ``record`` straight into the JSON values a saga state
    stores for them (:func:`~choreo._schemas.payloads.dump` of the model the validating reader
    builds), with no model in between; None if not eligible. Raises, as :func:`fast_reader`
    does, on any record it is not sure of (bytes that are not UTF-8 text included)."""
    try:
        return _PayloadCompiler().compile(record, model, header_size)
    except _Ineligible:
        return None


def _long(data: bytes, p: int) -> tuple[int, int]:
    """A zig-zag varint of two bytes or more (the generated code inlines the one-byte case)."""
    n = 0
    shift = 0
    while True:
        c = data[p]
        p += 1
        n |= (c & 0x7F) << shift
        if c < 0x80:
            break
        shift += 7
        if shift > 63:
            raise _Refused("varint longer than 10 bytes")
    if n >> 64:
        raise _Refused("varint beyond 64 bits")
    return (n >> 1) ^ -(n & 1), p


class _Compiler(SourceCompiler):
    """Emits the source of one Python function per (schema, model) and executes it once."""

    def __init__(self) -> None:
        super().__init__(
            {
                "_long": _long,
                "_Refused": _Refused,
                "_new": object.__new__,
                "_set": object.__setattr__,
                "_timedelta": datetime.timedelta,
                "_Decimal": decimal.Decimal,
                "_f32": struct.Struct("<f").unpack_from,
                "_f64": struct.Struct("<d").unpack_from,
                "_signed": int.from_bytes,
            }
        )

    def compile(self, record: Record, model: type[BaseModel], header_size: int) -> Read:
        body: list[str] = []
        self._record(body, record, model, "value")
        lines = ["def read(data):", "    size = len(data)", f"    p = {header_size}"]
        lines += ["    " + line for line in body]
        lines += ["    if p != size:", "        raise _Refused('bytes after the body')"]
        lines.append("    return value")
        return typing.cast(Read, self._build(lines, f"fast reader {record.name}", "read"))

    def _record(self, out: list[str], record: Record, model: type[BaseModel], target: str) -> None:
        """Lines building one model, inline (a nested record costs no call: recursive schemas
        are refused when the catalog is loaded)."""
        _check_model(model)
        by_alias = {info.alias or attr: (attr, info) for attr, info in model.model_fields.items()}
        values: dict[str, str] = {}
        for field in record.fields:
            attr, info = by_alias[field.name]  # binding checked the names match
            value = values[attr] = self._name("v")
            self._value(out, field.type, info.annotation, list(info.metadata), value)
        self._construct(out, model, values, target)

    def _construct(
        self, out: list[str], model: type[BaseModel], values: dict[str, str], target: str
    ) -> None:
        """Lines making the record's value from its fields' locals: the model."""
        # Validation fills __dict__ in the model's field order.
        items = ", ".join(f"{attr!r}: {values[attr]}" for attr in model.model_fields)
        names = ", ".join(repr(attr) for attr in model.model_fields)
        fields = f"{{{names}}}" if names else "set()"
        # What validation leaves in a model whose config has no extras or private attributes.
        out.append(f"{target} = _new({self._const(model)})")
        out.append(f"_set({target}, '__dict__', {{{items}}})")
        out.append(f"_set({target}, '__pydantic_fields_set__', {fields})")
        out.append(f"_set({target}, '__pydantic_extra__', None)")
        out.append(f"_set({target}, '__pydantic_private__', None)")

    def _value(
        self, out: list[str], avro: AvroType, annotation: Any, metadata: list[Any], target: str
    ) -> None:
        """Lines reading one value of type ``avro`` into the local ``target``."""
        annotation, metadata = _unwrap(annotation, metadata)
        inner, optional = nullable(avro)
        if optional:
            base = _non_none(annotation)
            index = self._name("i")
            present = 1 - avro.branches.index(Primitive("null"))  # type: ignore[union-attr]
            self._long_into(out, index)
            out.append(f"if {index} == {1 - present}:")
            out.append(f"    {target} = None")
            out.append(f"elif {index} == {present}:")
            branch: list[str] = []
            self._value(branch, inner, base, metadata, target)
            out.extend("    " + line for line in branch)
            out.append("else:")
            out.append("    raise _Refused('union index')")
            return
        if metadata and not _constrainable(inner):
            raise _Ineligible(f"constraints {metadata} on {inner!r}")
        match inner:
            case Primitive(name="null"):
                out.append(f"{target} = None")
            case Primitive(name="boolean"):
                out.append(f"{target} = data[p]")
                out.append("p += 1")
                out.append(f"if {target} > 1:")
                out.append("    raise _Refused('boolean byte')")
                out.append(f"{target} = {target} == 1")
            case Primitive(name="int" | "long" as kind, logical=None):
                self._long_into(out, target)
                self._bounds(out, target, kind, metadata)
            case Primitive(name="float" | "double" as kind):
                reader = "_f32" if kind == "float" else "_f64"
                out.append(f"{target} = {reader}(data, p)[0]")
                out.append(f"p += {4 if kind == 'float' else 8}")
            case Primitive(name="string", logical=None):
                self._bytes_into(out, target)
                out.append(f"{target} = {target}.decode()")
            case Primitive(name="bytes", logical=None):
                self._bytes_into(out, target)
                self._binary(out, target)
            case Fixed(logical=None):
                self._fixed_into(out, target, inner.size)
                self._binary(out, target)
            case Primitive(logical=logical) | Fixed(logical=logical) if logical is not None:
                self._logical(out, inner, metadata, target)
            case Enum(symbols=symbols):
                if not (isinstance(annotation, type) and issubclass(annotation, enum.Enum)):
                    raise _Ineligible(f"enum field typed {annotation!r}")
                members = self._const(self._members(annotation, symbols))
                self._long_into(out, target)
                out.append(f"if {target} < 0:")
                out.append("    raise _Refused('enum index')")
                out.append(f"{target} = {members}[{target}]")
            case Array(items=items):
                (item_annotation,) = get_args(annotation)

                def read_item(body: list[str], item: str) -> None:
                    self._value(body, items, item_annotation, [], item)

                self._blocks(out, target, "[]", read_item, "{t}.append({item})")
            case Map(values=values):
                _, value_annotation = get_args(annotation)
                key = self._name("k")

                def read_entry(body: list[str], item: str) -> None:
                    self._bytes_into(body, key)
                    body.append(f"{key} = {key}.decode()")
                    self._value(body, values, value_annotation, [], item)

                self._blocks(out, target, "{}", read_entry, f"{{t}}[{key}] = {{item}}")
            case Record():
                if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
                    raise _Ineligible(f"record field typed {annotation!r}")
                self._record(out, inner, annotation, target)
            case _:
                raise _Ineligible(f"Avro type {inner!r}")

    def _blocks(
        self,
        out: list[str],
        target: str,
        empty: str,
        read_item: Callable[[list[str], str], None],
        store: str,
    ) -> None:
        """Avro's array and map encoding: blocks of ``count`` items (a negative count is
        followed by the block's byte size), ended by a zero count."""
        count, item, skipped = self._name("n"), self._name("x"), self._name("s")
        out.append(f"{target} = {empty}")
        out.append("while True:")
        loop: list[str] = []
        self._long_into(loop, count)
        loop.append(f"if {count} == 0:")
        loop.append("    break")
        loop.append(f"if {count} < 0:")
        loop.append(f"    {count} = -{count}")
        block_size: list[str] = []
        self._long_into(block_size, skipped)
        loop.extend("    " + line for line in block_size)
        loop.append(f"for _ in range({count}):")
        body: list[str] = []
        read_item(body, item)
        body.append(store.format(t=target, item=item))
        loop.extend("    " + line for line in body)
        out.extend("    " + line for line in loop)

    def _long_into(self, out: list[str], target: str) -> None:
        """A zig-zag varint, the one-byte case inline (what most lengths and counts are)."""
        out.append(f"{target} = data[p]")
        out.append(f"if {target} < 128:")
        out.append(f"    {target} = ({target} >> 1) ^ -({target} & 1)")
        out.append("    p += 1")
        out.append("else:")
        out.append(f"    {target}, p = _long(data, p)")

    def _bytes_into(self, out: list[str], target: str) -> None:
        end = self._name("e")
        self._long_into(out, end)
        out.append(f"if {end} < 0:")
        out.append("    raise _Refused('negative length')")
        out.append(f"{end} += p")
        out.append(f"if {end} > size:")
        out.append("    raise _Refused('length past the end')")
        out.append(f"{target} = data[p:{end}]")
        out.append(f"p = {end}")

    def _fixed_into(self, out: list[str], target: str, size: int) -> None:
        out.append(f"if p + {size} > size:")
        out.append("    raise _Refused('fixed past the end')")
        out.append(f"{target} = data[p:p + {size}]")
        out.append(f"p += {size}")

    def _bounds(self, out: list[str], target: str, kind: str, metadata: list[Any]) -> None:
        """One chained comparison: the canonical range narrowed by the model's bounds."""
        low, high = _CANONICAL[kind]
        for item in metadata:
            attribute, shift = _BOUNDS.get(type(item), ("", 0))
            bound = getattr(item, attribute, None)
            if not isinstance(bound, int):
                raise _Ineligible(f"constraint {item!r} on an integer")
            if attribute in ("ge", "gt"):
                low = max(low, bound + shift)
            else:
                high = min(high, bound + shift)
        out.append(f"if not {low} <= {target} <= {high}:")
        out.append("    raise _Refused('integer out of bounds')")

    def _logical(
        self, out: list[str], avro: Primitive | Fixed, metadata: list[Any], target: str
    ) -> None:
        """Logical types built as fastavro builds them: decimals and timestamps inline, the
        rarer ones through its own converters."""
        logical = avro.logical
        assert logical is not None
        kind = "fixed" if isinstance(avro, Fixed) else avro.name
        raw = self._name("r")
        if isinstance(avro, Fixed):
            self._fixed_into(out, raw, avro.size)
        elif kind == "string":
            self._bytes_into(out, raw)
            out.append(f"{raw} = {raw}.decode()")
        elif kind == "bytes":
            self._bytes_into(out, raw)
        else:
            self._long_into(out, raw)
            low, high = _CANONICAL[kind]
            out.append(f"if {raw} < {low} or {raw} > {high}:")
            out.append("    raise _Refused('integer out of bounds')")
        if logical.name == "decimal":
            expected = AvroDecimal(logical.precision, logical.scale)
            if any(item != expected for item in metadata):
                raise _Ineligible(f"decimal constraints {metadata} differ from the schema's")
            # Within the precision fastavro does not round, and validation accepts the value;
            # the context is fastavro's (the thread's own could round).
            limit = 10**logical.precision
            context = self._const(decimal.Context(prec=logical.precision))
            out.append(f"{raw} = _signed({raw}, 'big', signed=True)")
            out.append(f"if not -{limit} < {raw} < {limit}:")
            out.append("    raise _Refused('decimal digits')")
            out.append(f"{target} = _Decimal({raw}).scaleb({-logical.scale}, {context})")
        elif (epoch := _EPOCHS.get(logical.name)) is not None:
            per_unit = 1000 if logical.name.endswith("millis") else 1
            self._timestamp(out, epoch, f"{raw} * {per_unit}", target)
        else:
            self._converted(out, f"{kind}-{logical.name}", raw, target)
        self._logical_value(out, logical.name, target)

    def _timestamp(
        self, out: list[str], epoch: datetime.datetime, micros: str, target: str
    ) -> None:
        """A timestamp by fastavro's arithmetic, without its call."""
        out.append(f"{target} = {self._const(epoch)} + _timedelta(0, 0, {micros})")

    def _converted(self, out: list[str], converter: str, raw: str, target: str) -> None:
        """The rarer logical types, through fastavro's own converters."""
        convert = self._const(LOGICAL_READERS[converter])
        out.append(f"{target} = {convert}({raw}, None, None)")

    # -- what differs for a payload (PayloadCompiler) -------------------------------------------

    def _binary(self, out: list[str], target: str) -> None:
        """A bytes or fixed value: the model holds the bytes."""

    def _members(self, annotation: type[enum.Enum], symbols: tuple[str, ...]) -> tuple[Any, ...]:
        """What each enum symbol reads as: the model's member."""
        return tuple(annotation(symbol) for symbol in symbols)

    def _logical_value(self, out: list[str], logical: str, target: str) -> None:
        """A logical type's value as fastavro builds it is the model's."""


def _constrainable(avro: AvroType) -> bool:
    """Types whose constraints this module checks: integer bounds, a decimal's digits."""
    if isinstance(avro, Primitive) and avro.logical is None:
        return avro.name in _CANONICAL
    logical = getattr(avro, "logical", None)
    return logical is not None and logical.name == "decimal"


def _check_model(model: type[BaseModel]) -> None:
    """Refuse models whose validation does more than build fields from typed values."""
    decorators = model.__pydantic_decorators__
    if (
        decorators.validators
        or decorators.field_validators
        or decorators.root_validators
        or decorators.model_validators
    ):
        raise _Ineligible(f"{model.__qualname__} has validators")
    if not set(model.model_config) <= _CONFIG_KEYS or model.model_config.get("extra") == "allow":
        raise _Ineligible(f"{model.__qualname__} config {model.model_config}")
    if model.__private_attributes__ or model.__pydantic_post_init__ is not None:
        raise _Ineligible(f"{model.__qualname__} has private attributes or a post-init")
    if getattr(model, "__pydantic_root_model__", False):
        raise _Ineligible(f"{model.__qualname__} is a root model")
    for name, info in model.model_fields.items():
        if info.validation_alias not in (None, info.alias):
            raise _Ineligible(f"{model.__qualname__}.{name} has a validation alias")


def _unwrap(annotation: Any, metadata: list[Any]) -> tuple[Any, list[Any]]:
    """The annotation without ``Annotated``, and every constraint found on the way."""
    found = list(metadata)
    while get_origin(annotation) is Annotated:
        annotation, *extra = get_args(annotation)
        found.extend(extra)
    flat: list[Any] = []
    for item in found:
        if isinstance(item, FieldInfo):
            flat.extend(item.metadata)
        else:
            flat.append(item)
    return annotation, flat


def _non_none(annotation: Any) -> Any:
    """``T`` of ``T | None`` (binding checked the model's field is optional)."""
    (base,) = [arg for arg in get_args(annotation) if arg is not type(None)]
    return base


class _PayloadCompiler(_Compiler):
    """:class:`_Compiler` writing what pydantic's JSON mode makes of the model instead: dicts
    in field order, text for bytes, decimals, times and UUIDs, enum values."""

    def _construct(
        self, out: list[str], model: type[BaseModel], values: dict[str, str], target: str
    ) -> None:
        decorators = model.__pydantic_decorators__
        if decorators.field_serializers or decorators.model_serializers:
            raise _Ineligible(f"{model.__qualname__} has serializers")
        if model.__pydantic_computed_fields__:
            raise _Ineligible(f"{model.__qualname__} has computed fields")
        if any(
            info.exclude or getattr(info, "exclude_if", None) is not None
            for info in model.model_fields.values()
        ):
            raise _Ineligible(f"{model.__qualname__} excludes fields")
        items = ", ".join(f"{attr!r}: {values[attr]}" for attr in model.model_fields)
        out.append(f"{target} = {{{items}}}")

    def _binary(self, out: list[str], target: str) -> None:
        out.append(f"{target} = {target}.decode()")  # not UTF-8: the authority's base64

    def _members(self, annotation: type[enum.Enum], symbols: tuple[str, ...]) -> tuple[Any, ...]:
        values = tuple(annotation(symbol).value for symbol in symbols)
        if not all(type(value) in (str, int) for value in values):
            raise _Ineligible(f"enum {annotation.__qualname__} has values JSON writes otherwise")
        return values

    def _converted(self, out: list[str], converter: str, raw: str, target: str) -> None:
        if converter != "string-uuid":
            super()._converted(out, converter, raw, target)
            return
        # The canonical form is its own text; any other goes through UUID as the model's does.
        canonical = self._const(_CANONICAL_UUID)
        out.append(f"if {canonical}({raw}) is None:")
        inner: list[str] = []
        super()._converted(inner, converter, raw, raw)
        out.extend("    " + line for line in inner)
        out.append(f"    {raw} = str({raw})")
        out.append(f"{target} = {raw}")

    def _timestamp(
        self, out: list[str], epoch: datetime.datetime, micros: str, target: str
    ) -> None:
        text = _UTC_TEXT if epoch.tzinfo is not None else _LOCAL_TEXT
        out.append(f"{target} = {self._const(text)}({micros})")

    def _logical_value(self, out: list[str], logical: str, target: str) -> None:
        if logical == "decimal":
            out.append(f"{target} = str({target})")
        elif logical == "date":
            out.append(f"{target} = {target}.isoformat()")
        elif logical not in _EPOCHS and logical != "uuid":
            raise _Ineligible(f"logical type {logical}")


class _TimestampText:
    """A timestamp's ISO text as pydantic's JSON mode writes it, from microseconds since the
    epoch. Each second's text is kept (up to :data:`SECONDS_KEPT`): the timestamps of an
    event stream cluster around now, so most take a dict lookup, not a datetime (~1.5 us)."""

    SECONDS_KEPT = 4096

    def __init__(self, suffix: str) -> None:
        self._suffix = suffix
        self._seconds: dict[int, str] = {}

    def __call__(self, micros: int) -> str:
        seconds, fraction = divmod(micros, 1_000_000)
        text = self._seconds.get(seconds)
        if text is None:
            if len(self._seconds) >= self.SECONDS_KEPT:
                self._seconds.clear()
            moment = _UTC_EPOCH.replace(tzinfo=None) + datetime.timedelta(seconds=seconds)
            text = self._seconds[seconds] = moment.isoformat()
        return f"{text}.{fraction:06d}{self._suffix}" if fraction else text + self._suffix


_UTC_TEXT = _TimestampText("Z")
_LOCAL_TEXT = _TimestampText("")
