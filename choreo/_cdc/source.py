"""Declarative Debezium PostgreSQL connectors, kept in the service module beside the handlers.

A connector is declared as a Python object, not a TOML file, so that the
handler that reads a table and the connector that captures it refer to the
same object (``@svc.on_change("public.customers", source=customers)``) and a
typo in a table name fails at import time, not in production::

    customers = CdcSource(
        name="crm-customers",                     # the Connect connector's name
        database=Postgres(host="db", dbname="crm", user="cdc", password="..."),
        tables=["public.customers"],              # schema.table, exact names
        slot="crm_customers",                     # replication slot (default: from name)
        publication="crm_customers",              # publication (default: the slot name)
        snapshot_mode="initial",                  # Debezium's snapshot.mode
        topic_prefix="crm",                       # topics: crm.public.customers
    )

``choreo cdc apply services.crm`` then PUTs every connector the module
declares. Whatever is not a field here goes in ``options`` (raw Debezium
settings, applied last). The password travels to Connect as given; a worker
config provider reference such as ``${file:/secrets/pg:password}`` is passed
through untouched for Connect to resolve.

Choices made for every connector, and why:

* ``plugin.name=pgoutput``: built into PostgreSQL 10+, nothing to install.
* ``publication.autocreate.mode=filtered``: the publication lists only the
  captured tables, so PostgreSQL decodes and sends only their changes (the
  ``all_tables`` default would stream every table of the database).
* ``poll.interval.ms=100`` instead of Debezium's 500: a change reaches Kafka
  ~0.1 s after commit instead of ~0.5 s (measured on the local stack);
  under load each poll still takes up to ``max.batch.size`` queued records.
* Converters are set on the connector, not inherited from the worker, so a
  worker with other defaults cannot change what consumers receive.
* Change connectors use JSON without schemas, ``decimal.handling.mode=string``
  (exact decimals instead of base64 bytes) and ``time.precision.mode=connect``
  (timestamps without time zone as epoch milliseconds, which pydantic reads as
  datetimes; ``timestamptz`` arrives as an ISO-8601 string, ``date`` as days
  since the epoch).
* With ``avro_registry`` set, values are Avro in the schema registry wire
  format instead (what Java consumers, ksqlDB and Flink read), written by
  Apicurio Registry's Avro converter: it registers each table's envelope
  schema itself under ``<topic>-value`` (a schema derived from the table, so
  it has to), and frames records the Confluent way (a 4-byte content id, no
  headers) so that one decoder reads them and Confluent's. Avro names take
  no ``-``: ``schema.name.adjustment.mode=avro`` turns other characters of a
  topic prefix into ``_`` in the schema names (topics keep theirs). Keys stay
  JSON. Timestamps then arrive as datetimes and dates as dates.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import unquote, urlsplit

from choreo._cdc.subscribe import TopicRegistrar, on_change
from choreo._errors import ConfigError, TopologyError
from choreo._retry import RetryPolicy

if TYPE_CHECKING:
    from pydantic import BaseModel

F = TypeVar("F", bound=Callable[..., Any])

POSTGRES_CONNECTOR = "io.debezium.connector.postgresql.PostgresConnector"
JSON_CONVERTER = "org.apache.kafka.connect.json.JsonConverter"
AVRO_CONVERTER = "io.apicurio.registry.utils.converter.AvroConverter"
APICURIO_API = "/apis/registry/v2"
"""Apicurio's own API, the one its converter speaks (clients use ``/apis/ccompat/v7``)."""
SNAPSHOT_MODES = (
    "initial",
    "initial_only",
    "no_data",
    "always",
    "when_needed",
    "configuration_based",
    "recovery",
)

_IDENTIFIER = r"[A-Za-z_][A-Za-z0-9_$]*"
_TABLE = re.compile(rf"{_IDENTIFIER}\.{_IDENTIFIER}")
_SLOT = re.compile(r"[a-z0-9_]{1,63}")
_TOPIC_PREFIX = re.compile(r"[A-Za-z0-9._-]{1,200}")


@dataclass(frozen=True, kw_only=True)
class Postgres:
    """Where the connector (and ``choreo cdc outbox-init``) reaches the database."""

    host: str = "127.0.0.1"
    port: int = 5432
    dbname: str = "postgres"
    user: str = "postgres"
    password: str = field(default="", repr=False)

    @classmethod
    def from_dsn(cls, dsn: str) -> Postgres:
        """From a ``postgresql://user:password@host:port/dbname`` URL."""
        parts = urlsplit(dsn)
        if parts.scheme not in ("postgres", "postgresql") or not parts.hostname:
            raise ConfigError(f"not a postgresql:// URL: {parts.scheme}://{parts.hostname}...")
        return cls(
            host=parts.hostname,
            port=parts.port or 5432,
            dbname=unquote(parts.path.lstrip("/")) or "postgres",
            user=unquote(parts.username or "postgres"),
            password=unquote(parts.password or ""),
        )

    @property
    def dsn(self) -> str:
        """A libpq keyword DSN for psycopg (values quoted, so any password works)."""

        def quote(value: object) -> str:
            text = str(value).replace("\\", "\\\\").replace("'", "\\'")
            return f"'{text}'"

        pieces = {
            "host": self.host,
            "port": self.port,
            "dbname": self.dbname,
            "user": self.user,
            "password": self.password,
        }
        return " ".join(f"{key}={quote(value)}" for key, value in pieces.items())

    def settings(self) -> dict[str, str]:
        return {
            "database.hostname": self.host,
            "database.port": str(self.port),
            "database.dbname": self.dbname,
            "database.user": self.user,
            "database.password": self.password,
        }


@dataclass(frozen=True, kw_only=True)
class PostgresConnector(ABC):
    """What every Debezium PostgreSQL connector choreo manages has: a name, a slot, a publication.

    Subclasses add what they capture and how records are shaped
    (:class:`CdcSource` for row changes, ``OutboxRelay`` for the outbox).
    """

    name: str
    database: Postgres
    slot: str | None = None
    """Replication slot; defaults to the name in lower case with ``_`` for other characters."""
    publication: str | None = None
    """Publication; defaults to the slot name."""
    snapshot_mode: str = "initial"
    topic_prefix: str | None = None
    """First part of every topic name; defaults to the connector name."""
    options: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    """Raw connector settings, applied over choreo's (escape hatch)."""

    def __post_init__(self) -> None:
        if not self.name or "/" in self.name:
            raise ConfigError(f"connector name {self.name!r} must be non-empty without '/'")
        if not _SLOT.fullmatch(self.slot_name):
            raise ConfigError(
                f"{self.name}: slot {self.slot_name!r} must be 1-63 of a-z, 0-9 and '_'"
            )
        if not _SLOT.fullmatch(self.publication_name):
            raise ConfigError(
                f"{self.name}: publication {self.publication_name!r} "
                "must be 1-63 of a-z, 0-9 and '_'"
            )
        if self.snapshot_mode not in SNAPSHOT_MODES:
            raise ConfigError(
                f"{self.name}: unknown snapshot_mode {self.snapshot_mode!r}; "
                f"one of {', '.join(SNAPSHOT_MODES)}"
            )
        if not _TOPIC_PREFIX.fullmatch(self.prefix):
            raise ConfigError(f"{self.name}: topic prefix {self.prefix!r} is not a topic name")

    @property
    def slot_name(self) -> str:
        return self.slot or re.sub(r"[^a-z0-9_]", "_", self.name.lower())[:63]

    @property
    def publication_name(self) -> str:
        return self.publication or self.slot_name

    @property
    def prefix(self) -> str:
        return self.topic_prefix or self.name

    @abstractmethod
    def _captured(self) -> Sequence[str]:
        """The ``schema.table`` names the connector reads."""

    @abstractmethod
    def _shaping(self) -> dict[str, str]:
        """Converters and transforms: how the captured rows become records."""

    def connector_config(self) -> dict[str, str]:
        """The body of ``PUT /connectors/<name>/config``."""
        return {
            "connector.class": POSTGRES_CONNECTOR,
            "tasks.max": "1",
            **self.database.settings(),
            "plugin.name": "pgoutput",
            "slot.name": self.slot_name,
            "publication.name": self.publication_name,
            "publication.autocreate.mode": "filtered",
            "table.include.list": ",".join(re.escape(t) for t in self._captured()),
            "topic.prefix": self.prefix,
            "snapshot.mode": self.snapshot_mode,
            "poll.interval.ms": "100",
            # Connect creates a topic missing when the first change arrives (the broker's
            # partition and replica defaults): brokers with auto.create.topics.enable=false,
            # as the local stack's, would otherwise block the task until it fails.
            "topic.creation.default.partitions": "-1",
            "topic.creation.default.replication.factor": "-1",
            **self._shaping(),
            **self.options,
        }


def check_table(owner: str, table: str) -> str:
    """``schema.table`` of plain identifiers: both parts end up in SQL text and in regexes."""
    if not _TABLE.fullmatch(table):
        raise ConfigError(
            f"{owner}: table {table!r} must be schema.table (letters, digits, '_', '$')"
        )
    return table


@dataclass(frozen=True, kw_only=True)
class CdcSource(PostgresConnector):
    """A connector streaming row changes of ``tables`` as Debezium JSON envelopes.

    Each table gets the topic ``<topic_prefix>.<schema>.<table>``; handlers
    subscribe with ``@svc.on_change(table, source=this)``.
    """

    tables: Sequence[str]
    avro_registry: str | None = None
    """Apicurio Registry's base URL as Kafka Connect reaches it (``http://registry:8080``):
    values are then Avro in the schema registry wire format; None (the default): JSON."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if isinstance(self.tables, str) or not self.tables:
            raise ConfigError(f"{self.name}: tables must be a non-empty list of schema.table")
        object.__setattr__(self, "tables", tuple(check_table(self.name, t) for t in self.tables))
        registry = self.avro_registry
        if registry is not None and urlsplit(registry).scheme not in ("http", "https"):
            raise ConfigError(
                f"{self.name}: avro_registry {registry!r} must be the registry's http(s) base URL"
            )

    def topic_of(self, table: str) -> str:
        """The change topic of ``table``; refuses a table this connector does not capture."""
        if table not in self.tables:
            raise TopologyError(
                f"connector {self.name} does not capture {table!r} "
                f"(its tables: {', '.join(self.tables)})"
            )
        return f"{self.prefix}.{table}"

    def subscribe(
        self,
        service: TopicRegistrar,
        table: str,
        *,
        model: type[BaseModel] | None = None,
        retry: RetryPolicy | None = None,
        max_size: int | None = None,
        max_wait_s: float = 0.5,
    ) -> Callable[[F], F]:
        """What ``Service.on_change(table, source=this)`` calls: CDC registers the handler
        through the service's own ``on_topic``, so the service API never imports CDC."""
        return on_change(
            service,
            table,
            self.topic_of(table),
            model=model,
            retry=retry,
            max_size=max_size,
            max_wait_s=max_wait_s,
        )

    def _captured(self) -> Sequence[str]:
        return self.tables

    def _shaping(self) -> dict[str, str]:
        return {
            "key.converter": JSON_CONVERTER,
            "key.converter.schemas.enable": "false",
            **(self._json_values() if self.avro_registry is None else self._avro_values()),
            "decimal.handling.mode": "string",
            "time.precision.mode": "connect",
        }

    @staticmethod
    def _json_values() -> dict[str, str]:
        return {"value.converter": JSON_CONVERTER, "value.converter.schemas.enable": "false"}

    def _avro_values(self) -> dict[str, str]:
        """Apicurio's converter, framing records as Confluent's serializers do."""
        base = str(self.avro_registry).rstrip("/")
        options = {
            "url": base + APICURIO_API,
            "auto-register": "true",
            "find-latest": "true",
            "as-confluent": "true",  # a 4-byte id after the zero byte, not Apicurio's 8
            "use-id": "contentId",  # the id the Confluent-compatible API serves schemas by
            "headers.enabled": "false",  # the id in the value, where every reader looks
        }
        return {
            "value.converter": AVRO_CONVERTER,
            **{f"value.converter.apicurio.registry.{k}": v for k, v in options.items()},
            "schema.name.adjustment.mode": "avro",
        }
