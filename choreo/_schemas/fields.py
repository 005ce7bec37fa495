"""Field types for event models, named so generated code cannot be shadowed by field names.

A model with a field called ``date`` typed ``date`` breaks at class creation (the field's default
replaces the type in the class namespace), so generated models say ``Date``, ``Timestamp``...

The constrained ones exist because fastavro writes any Python int into an Avro ``int`` and
refuses a decimal with more places than the schema's scale even when they are trailing zeros:
these turn both into validation errors where the event is built, instead of wire corruption or
an encode failure later.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from decimal import Context, Decimal
from typing import Annotated, Any

from pydantic import AwareDatetime, Field, GetCoreSchemaHandler, NaiveDatetime
from pydantic_core import core_schema

Int32 = Annotated[int, Field(ge=-(2**31), le=2**31 - 1)]
Int64 = Annotated[int, Field(ge=-(2**63), le=2**63 - 1)]
Date = datetime.date
Time = datetime.time
Timestamp = AwareDatetime
"""``timestamp-millis``/``-micros``: an instant, so it must carry a time zone."""
LocalTimestamp = NaiveDatetime


@dataclass(frozen=True)
class AvroDecimal:
    """``Annotated`` metadata for an Avro ``decimal(precision, scale)`` field.

    Validates the digits, and serializes with exactly ``scale`` places, which the Avro encoding
    needs (``Decimal("1.500")`` is a valid ``decimal(10,2)`` value but fastavro refuses it).
    Quantizing when serializing rather than validating keeps the decode path free of Python
    callbacks: decoded values already have the schema's scale.
    """

    precision: int
    scale: int

    def __get_pydantic_core_schema__(
        self, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        exponent = Decimal(1).scaleb(-self.scale)
        context = Context(prec=self.precision)  # the default 28 digits would reject wider ones

        def quantize(value: Decimal) -> Decimal:
            return value.quantize(exponent, context=context)

        return core_schema.decimal_schema(
            max_digits=self.precision,
            decimal_places=self.scale,
            serialization=core_schema.plain_serializer_function_ser_schema(quantize),
        )
