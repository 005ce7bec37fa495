"""Checking that a model class matches the schema it will be encoded and decoded with.

Run at start-up (the codec does it the first time it meets a model) so that a hand-edited or
stale model fails before the service consumes anything, naming the first field that differs,
rather than turning every record into a validation error.
"""

from __future__ import annotations

import enum
import types
import typing
from typing import Annotated, Any, get_args, get_origin

from pydantic import BaseModel

from choreo._errors import SchemaError
from choreo._schemas.avro import (
    Array,
    AvroType,
    Enum,
    Fixed,
    Map,
    Primitive,
    Record,
    describe,
    nullable,
)
from choreo._schemas.event import Event
from choreo._schemas.layout import SchemaVersion
from choreo._schemas.mapping import leaf_type


def check_model(model: type[Event], schema: SchemaVersion) -> None:
    """Raise :class:`SchemaError` naming ``model`` and the first field that does not match."""
    event_type = getattr(model, "event_type", None)
    if event_type != schema.event_type:
        raise SchemaError(
            f"model {model.__qualname__} has event_type {event_type!r}, "
            f"expected {schema.event_type!r}"
        )
    problem = _record_problem(model, schema.record, "")
    if problem:
        raise SchemaError(
            f"model {model.__qualname__} does not match {schema.label} ({schema.path}): {problem}"
        )


def newest_match(model: type[Event], versions: list[SchemaVersion]) -> SchemaVersion:
    """The newest of ``versions`` that ``model`` matches.

    A service deployed before v2 was published still has a v1-shaped model once the catalog
    holds v2; binding it to v1 lets it keep decoding (v2 data resolved to v1) and producing
    valid v1 records. When no version matches, the error is the one against the newest.
    """
    first_error: SchemaError | None = None
    for version in reversed(versions):
        try:
            check_model(model, version)
        except SchemaError as exc:
            first_error = first_error or exc
        else:
            return version
    raise first_error or SchemaError(f"model {model.__qualname__}: no schema versions given")


def _record_problem(model: type[BaseModel], record: Record, prefix: str) -> str | None:
    # An alias is the name the field has in the dicts fastavro reads and writes.
    fields = {info.alias or name: info for name, info in model.model_fields.items()}
    for field in record.fields:
        path = prefix + field.name
        if field.name not in fields:
            return f"field '{path}' is missing from the model"
        problem = _type_problem(fields[field.name].annotation, field.type, path)
        if problem:
            return problem
    in_schema = {f.name for f in record.fields}
    extra = [name for name in fields if name not in in_schema]
    if extra:
        return f"field '{prefix}{extra[0]}' is in the model but not in the schema"
    return None


def _type_problem(annotation: Any, avro_type: AvroType, path: str) -> str | None:
    try:
        inner, schema_optional = nullable(avro_type)
    except SchemaError as exc:
        return f"field '{path}': {exc}"
    base, model_optional = _split_optional(_strip(annotation))
    if schema_optional != model_optional:
        if model_optional:
            return f"field '{path}' is optional in the model but not nullable in the schema"
        return f"field '{path}' is required in the model but nullable in the schema"
    return _base_problem(_strip(base), inner, path)


def _base_problem(annotation: Any, avro_type: AvroType, path: str) -> str | None:
    args = get_args(annotation)
    match avro_type:
        case Primitive() | Fixed():
            if any(annotation is t for t in leaf_type(avro_type).accepts):
                return None
        case Enum(symbols=symbols):
            if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
                values = sorted(str(member.value) for member in annotation)
                if values == sorted(symbols):
                    return None
                return (
                    f"field '{path}' enum {annotation.__name__} has {values} "
                    f"but {avro_type.name} has {sorted(symbols)}"
                )
        case Array(items=items):
            if get_origin(annotation) is list:
                return _type_problem(args[0], items, f"{path}[]")
        case Map(values=values):
            if get_origin(annotation) is dict and args[0] is str:
                return _type_problem(args[1], values, f"{path}{{}}")
        case Record():
            if isinstance(annotation, type) and issubclass(annotation, BaseModel):
                return _record_problem(annotation, avro_type, f"{path}.")
    return (
        f"field '{path}' is {_show(annotation)} in the model "
        f"but {describe(avro_type)} in the schema"
    )


def _strip(annotation: Any) -> Any:
    """Drop ``Annotated`` metadata: constraints refine a type, they do not change it."""
    while get_origin(annotation) is Annotated:
        annotation = get_args(annotation)[0]
    return annotation


def _split_optional(annotation: Any) -> tuple[Any, bool]:
    if get_origin(annotation) in (typing.Union, types.UnionType):
        others = [a for a in get_args(annotation) if a is not type(None)]
        if len(others) == 1 and len(get_args(annotation)) == 2:
            return others[0], True
    return annotation, False


def _show(annotation: Any) -> str:
    if get_args(annotation):
        return repr(annotation).replace("typing.", "")
    return getattr(annotation, "__name__", repr(annotation))
