"""An event's fields as a saga state holds them (JSON values), and back, without loss.

pydantic's JSON mode writes a ``bytes`` field as UTF-8 text, and raises on bytes that are not
UTF-8: an Avro ``bytes`` or ``fixed`` field holding a digest, a signature or any binary value
stopped the tracker at the first such event, and again at every restart. Such a payload is
written with every bytes value in URL-safe base64 and marked :data:`BASE64_BYTES` (no Avro
field name starts with ``$``), so its values are read back by the model's annotations. Every
other payload is written as before: states already in changelogs read the same.
"""

from __future__ import annotations

import base64
import binascii
import types
import typing
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel
from pydantic_core import to_jsonable_python

from choreo._schemas.event import Event

BASE64_BYTES = "$bytes"
"""Key of a payload whose bytes values are base64 (value: ``"base64"``)."""


def dump(event: Event) -> dict[str, Any]:
    """``event``'s fields as JSON values (pydantic's JSON mode), bytes in base64 where any of
    them is not UTF-8 text."""
    serializer = event.__pydantic_serializer__
    try:
        return serializer.to_python(event, mode="json")  # type: ignore[no-any-return]
    except UnicodeDecodeError:
        # Python mode leaves bytes as bytes; the rest is what JSON mode writes.
        values = serializer.to_python(event, mode="python")
        payload: dict[str, Any] = to_jsonable_python(values, bytes_mode="base64")
        payload[BASE64_BYTES] = "base64"
        return payload


def values(model: type[BaseModel], payload: Mapping[str, Any]) -> Mapping[str, Any]:
    """``payload``, written by :func:`dump` from a ``model``, as ``model`` validates it: the
    payload itself unless marked, else a copy with each bytes value decoded."""
    if BASE64_BYTES not in payload:
        return payload
    return _record(model, payload)


def _record(model: type[BaseModel], payload: Mapping[str, Any]) -> dict[str, Any]:
    fields = model.model_fields
    return {
        name: _value(fields[name].annotation, value) if name in fields else value
        for name, value in payload.items()
        if name != BASE64_BYTES
    }


def _value(annotation: Any, value: Any) -> Any:
    """``value`` with the bytes ``annotation`` says it holds decoded; a union of bytes with
    another type that is text in JSON (``str | bytes``) cannot be told apart and stays text."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _value(typing.get_args(annotation)[0], value)
    if origin is typing.Union or origin is types.UnionType:
        options = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
        return _value(options[0], value) if len(options) == 1 and value is not None else value
    if annotation is bytes and isinstance(value, str):
        try:
            return base64.b64decode(value, altchars=b"-_", validate=True)  # pydantic's: URL-safe
        except binascii.Error:
            return value  # not what dump wrote: validation says what is wrong with it
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return _record(annotation, value) if isinstance(value, dict) else value
    args = typing.get_args(annotation)
    if origin in (list, tuple, set, frozenset) and isinstance(value, list) and len(args) >= 1:
        return [_value(args[0], item) for item in value]
    if origin is dict and isinstance(value, dict) and len(args) == 2:
        return {key: _value(args[1], item) for key, item in value.items()}
    return value
