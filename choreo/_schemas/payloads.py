"""An event's fields as a saga state holds them (JSON values), and back, without loss.

pydantic's JSON mode writes a ``bytes`` field as UTF-8 text, and raises on bytes that are not
UTF-8: an Avro ``bytes`` or ``fixed`` field holding a digest, a signature or any binary value
stopped the tracker at the first such event, and again at every restart. Such a payload is
written with every bytes value in URL-safe base64, and :data:`BASE64_BYTES` lists where they
are (no Avro field name starts with ``$``): they are read back by that list, not by the model,
which may have changed since (a string field that became bytes, a union). Every other payload
is written as before: states already in changelogs read the same.
"""

from __future__ import annotations

import base64
import binascii
import copy
from collections.abc import Mapping
from typing import Any

from pydantic_core import to_jsonable_python

from choreo._schemas.event import Event

BASE64_BYTES = "$bytes"
"""Key of a payload holding bytes in base64: the path (keys and list indexes) to each."""

Path = list[str | int]


def dump(event: Event) -> dict[str, Any]:
    """``event``'s fields as JSON values (pydantic's JSON mode), bytes in base64 where any of
    them is not UTF-8 text."""
    serializer = event.__pydantic_serializer__
    try:
        return serializer.to_python(event, mode="json")  # type: ignore[no-any-return]
    except UnicodeDecodeError:
        # Python mode leaves bytes as bytes; the rest is what JSON mode writes.
        paths: list[Path] = []
        encoded = _encoded(serializer.to_python(event, mode="python"), [], paths)
        payload: dict[str, Any] = to_jsonable_python(encoded)
        payload[BASE64_BYTES] = paths
        return payload


def values(payload: Mapping[str, Any]) -> Mapping[str, Any]:
    """``payload``, written by :func:`dump`, as its model validates it: the payload itself
    unless it holds base64, else a copy with those values decoded. A path or a value that is
    not what :func:`dump` wrote (a hand-edited state) is left as it is: validation says what
    is wrong with it."""
    paths = payload.get(BASE64_BYTES)
    if paths is None:
        return payload
    decoded = copy.deepcopy({key: value for key, value in payload.items() if key != BASE64_BYTES})
    for path in paths if isinstance(paths, list) else ():
        _decode_at(decoded, path)
    return decoded


def _encoded(value: Any, path: Path, paths: list[Path]) -> Any:
    if isinstance(value, bytes | bytearray):
        paths.append(path)
        return base64.urlsafe_b64encode(value).decode()
    if isinstance(value, dict):
        return {key: _encoded(item, [*path, key], paths) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_encoded(item, [*path, index], paths) for index, item in enumerate(value)]
    return value


def _decode_at(payload: dict[str, Any], path: Any) -> None:
    if not isinstance(path, list) or not path:
        return
    try:
        container: Any = payload
        for step in path[:-1]:
            container = container[step]
        text = container[path[-1]]
        if isinstance(text, str):
            container[path[-1]] = base64.b64decode(text, altchars=b"-_", validate=True)
    except (KeyError, IndexError, TypeError, ValueError, binascii.Error):
        return
