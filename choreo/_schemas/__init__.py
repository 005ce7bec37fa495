"""Event contracts: Avro schemas in ``schemas/``, pydantic models in code, and the wire format.

The catalog is the single source of truth; the models are generated from it and checked
against it at start-up, and the codec decodes any published version into the current model.
"""

from choreo._schemas.binding import check_model
from choreo._schemas.catalog import Catalog, TopicSpec
from choreo._schemas.codec import Codec
from choreo._schemas.codegen import generate as generate_models
from choreo._schemas.codegen import is_fresh as models_are_fresh
from choreo._schemas.codegen import write as write_models
from choreo._schemas.commands import check_command, codegen_command
from choreo._schemas.compat import check_catalog
from choreo._schemas.event import Event, Record
from choreo._schemas.fields import (
    AvroDecimal,
    Date,
    Int32,
    Int64,
    LocalTimestamp,
    Time,
    Timestamp,
)
from choreo._schemas.layout import SchemaVersion

__all__ = [
    "AvroDecimal",
    "Catalog",
    "Codec",
    "Date",
    "Event",
    "Int32",
    "Int64",
    "LocalTimestamp",
    "Record",
    "SchemaVersion",
    "Time",
    "Timestamp",
    "TopicSpec",
    "check_catalog",
    "check_command",
    "check_model",
    "codegen_command",
    "generate_models",
    "models_are_fresh",
    "write_models",
]
