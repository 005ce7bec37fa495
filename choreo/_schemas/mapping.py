"""The one table from Avro leaf types to Python types.

Code generation needs the source text and binding needs the runtime class; keeping both in one
row means a generated model always passes :func:`~choreo._schemas.binding.check_model`. The
Python types are the ones fastavro's logical-type readers return, so decoded values validate
without conversion; timestamps also accept a plain ``datetime`` annotation, which fastavro reads
as UTC when naive.
"""

from __future__ import annotations

import datetime
import decimal
import uuid
from dataclasses import dataclass

from pydantic import AwareDatetime, NaiveDatetime

from choreo._schemas.avro import Fixed, Primitive

RUNTIME_MODULE = "choreo"
"""Where generated modules import the model vocabulary (Event, Int32, Timestamp...) from."""


@dataclass(frozen=True)
class PyType:
    accepts: tuple[object, ...]
    """Annotations a model may carry (``Annotated`` metadata stripped); the first is canonical."""
    source: str
    imports: tuple[tuple[str, str], ...] = ()
    """``(module, name)`` pairs the source needs."""


def _ours(name: str, *accepts: object) -> PyType:
    return PyType(accepts, name, ((RUNTIME_MODULE, name),))


def _std(name: str, runtime: type) -> PyType:
    return PyType((runtime,), name)


_PLAIN: dict[tuple[str, str | None], PyType] = {
    ("null", None): _std("None", type(None)),
    ("boolean", None): _std("bool", bool),
    ("int", None): _ours("Int32", int),
    ("long", None): _ours("Int64", int),
    ("float", None): _std("float", float),
    ("double", None): _std("float", float),
    ("string", None): _std("str", str),
    ("bytes", None): _std("bytes", bytes),
    ("fixed", None): _std("bytes", bytes),
    ("int", "date"): _ours("Date", datetime.date),
    ("int", "time-millis"): _ours("Time", datetime.time),
    ("long", "time-micros"): _ours("Time", datetime.time),
    ("long", "timestamp-millis"): _ours("Timestamp", AwareDatetime, datetime.datetime),
    ("long", "timestamp-micros"): _ours("Timestamp", AwareDatetime, datetime.datetime),
    ("long", "local-timestamp-millis"): _ours("LocalTimestamp", NaiveDatetime, datetime.datetime),
    ("long", "local-timestamp-micros"): _ours("LocalTimestamp", NaiveDatetime, datetime.datetime),
    ("string", "uuid"): PyType((uuid.UUID,), "UUID", (("uuid", "UUID"),)),
}


def leaf_type(avro_type: Primitive | Fixed) -> PyType:
    kind = "fixed" if isinstance(avro_type, Fixed) else avro_type.name
    logical = avro_type.logical
    if logical is not None and logical.name == "decimal":
        return PyType(
            (decimal.Decimal,),
            f"Annotated[Decimal, AvroDecimal({logical.precision}, {logical.scale})]",
            (("typing", "Annotated"), ("decimal", "Decimal"), (RUNTIME_MODULE, "AvroDecimal")),
        )
    return _PLAIN[(kind, logical.name if logical else None)]
