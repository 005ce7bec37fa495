"""choreo: event-driven choreography on Apache Kafka.

Typed Avro events, one handler module per service, at-least-once consumption
with retries and dead letters; see the README for the tour.
"""

from __future__ import annotations

from choreo._batch import BatchContext
from choreo._config import KafkaConfig, ServiceConfig, load_config
from choreo._context import Context
from choreo._errors import (
    ChoreoError,
    ConfigError,
    DecodeError,
    IncompatibleSchemaError,
    SchemaError,
    TopologyError,
    TransportError,
)
from choreo._guards import CircuitBreaker, RateLimit
from choreo._publisher import Publisher
from choreo._retry import RetryPolicy
from choreo._runtime.idempotency import PostgresIdempotency, SqliteIdempotency
from choreo._schedule import Tick
from choreo._schemas import (
    AvroDecimal,
    Catalog,
    Date,
    Event,
    Int32,
    Int64,
    LocalTimestamp,
    Record,
    Time,
    Timestamp,
)
from choreo._service import Service

__all__ = [
    "AvroDecimal",
    "BatchContext",
    "Catalog",
    "ChoreoError",
    "CircuitBreaker",
    "ConfigError",
    "Context",
    "Date",
    "DecodeError",
    "Event",
    "IncompatibleSchemaError",
    "Int32",
    "Int64",
    "KafkaConfig",
    "LocalTimestamp",
    "PostgresIdempotency",
    "Publisher",
    "RateLimit",
    "Record",
    "RetryPolicy",
    "SchemaError",
    "Service",
    "ServiceConfig",
    "SqliteIdempotency",
    "Tick",
    "Time",
    "Timestamp",
    "TopologyError",
    "TransportError",
    "load_config",
]
