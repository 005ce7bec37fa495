"""A Debezium change event as a typed ``Change``, decoded from the JSON envelope.

The connector writes JSON without schemas (``CdcSource`` sets the
converters), so a record value is
``{"before": {...}, "after": {...}, "source": {...}, "op": "c", "ts_ms": ...}``
and its key is the row's primary key as a JSON object.

What a handler can rely on:

* ``op`` is ``create``, ``update``, ``delete`` or ``read`` (a snapshot row).
* ``before`` is the row before an update or delete, and is only complete
  with ``REPLICA IDENTITY FULL`` on the table: by default PostgreSQL logs
  nothing for an update (``before`` is None) and only the key columns for a
  delete (the other columns are None).
* Rows are dicts, or instances of the pydantic ``model`` given to
  ``on_change`` (validated per row; a row that does not validate is
  dead-lettered with reason ``invalid``).
* A column added to the table shows up as a new key in the next rows' dicts
  (no restart, no schema registry); with a ``model`` it is ignored unless
  the model declares it (pydantic ignores unknown fields by default), and a
  dropped column disappears from the dicts.

A connector with ``avro_registry`` writes the same envelope as Avro in the
schema registry wire format (a zero byte, a 4-byte schema id, the body); the
first byte tells the two apart, so one handler reads both. The
writer schema of an id comes from the service's ``[schema_registry]`` once and
is kept; the envelope is then read exactly like a JSON one.

What is not a change is refused with ``DecodeError`` and dead-lettered: a
value that is not JSON (``not-json``), a registry-framed value with no
registry configured (``registry-framed``), one whose body does not match its
schema (``not-avro``; an id the registry cannot give has the reasons of
:meth:`RegistrySchemas.writer_schema`), or a value that is not a Debezium
row-change envelope (``not-debezium``). The tombstone Debezium writes after a delete (a null
value, for log compaction) is not a change either: it decodes to None, which
``on_change`` skips, because the delete itself already arrived.
"""

from __future__ import annotations

import io
import json
import struct
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Generic, Literal, TypeVar

from fastavro import schemaless_reader
from pydantic import BaseModel, ValidationError

from choreo._errors import DecodeError
from choreo._schemas.codec import _first_error as first_error
from choreo._schemas.registry_wire import HEADER_SIZE, MAGIC, RegistrySchemas, schema_id
from choreo._transport.base import Record

RowT = TypeVar("RowT")
Op = Literal["create", "update", "delete", "read"]

_OPS: dict[str, Op] = {"c": "create", "u": "update", "d": "delete", "r": "read"}
_BAD_BODY = (EOFError, ValueError, ArithmeticError, LookupError, TypeError, struct.error)
"""What fastavro raises on a body that does not match its schema: cut short, a length or a
union index out of range, a timestamp too large for a datetime, bytes that are not UTF-8."""


@dataclass(frozen=True, slots=True)
class SourceInfo:
    """Where and when the change happened, from the envelope's ``source`` block."""

    db: str
    schema: str
    table: str
    lsn: int | None
    """WAL position of the change (orders changes within the database)."""
    tx_id: int | None
    """PostgreSQL transaction id: changes of one transaction share it."""
    ts_ms: int
    """When the change was committed (epoch ms); for a snapshot row, when it was read."""
    snapshot: bool
    """True for rows read by a snapshot rather than streamed from the WAL."""
    connector: str
    """The connector's logical name (its topic prefix)."""

    @property
    def committed_at(self) -> datetime:
        return datetime.fromtimestamp(self.ts_ms / 1000, UTC)


@dataclass(frozen=True, slots=True)
class Change(Generic[RowT]):
    """One row change; ``RowT`` is ``dict[str, Any]`` or the pydantic model asked for."""

    op: Op
    before: RowT | None
    after: RowT | None
    source: SourceInfo
    key: dict[str, Any] | None
    """The primary key columns, from the record key."""
    ts_ms: int
    """When Debezium processed the change (``source.ts_ms`` is the commit time)."""

    @property
    def row(self) -> RowT:
        """The row as it is now: ``after``, or ``before`` for a delete."""
        row = self.before if self.op == "delete" else self.after
        if row is None:  # a delete without a replica identity still has the key columns
            raise ValueError(f"{self.op} of {self.source.table} carries no row")
        return row

    @property
    def table(self) -> str:
        return f"{self.source.schema}.{self.source.table}"


def change_decoder(model: type[BaseModel] | None = None) -> ChangeDecoder:
    """A ``Record -> Change | None`` function for ``Service.on_topic``; None for tombstones."""
    return ChangeDecoder(model)


class ChangeDecoder:
    """Reads Debezium envelopes, JSON or registry-framed Avro, into ``Change`` objects.

    The runtime hands it the service's registry (``with_registry``) before the first
    record: the decoder is made when the handler is declared, long before the config is read.
    """

    def __init__(
        self, model: type[BaseModel] | None, registry: RegistrySchemas | None = None
    ) -> None:
        self.model = model
        self._validate = None if model is None else model.model_validate
        self._registry = registry

    def with_registry(self, registry: RegistrySchemas | None) -> ChangeDecoder:
        """The same decoder, reading registry-framed values through ``registry``."""
        return ChangeDecoder(self.model, registry)

    def __call__(self, record: Record) -> Change[Any] | None:
        if record.value is None:
            return None
        if record.value[:1] == bytes([MAGIC]):
            envelope = self._avro(record.value)
        else:
            envelope = _json(record.value, "value")
        if not isinstance(envelope, dict):
            raise DecodeError("not-debezium", "the value is not a JSON object")
        code = envelope.get("op")
        op = _OPS.get(code) if isinstance(code, str) else None
        source = envelope.get("source")
        if op is None or not isinstance(source, dict):
            raise DecodeError(
                "not-debezium",
                "the value is not a Debezium row change (no 'op' of c/u/d/r and 'source')",
            )
        key = _json(record.key, "key") if record.key is not None else None
        return Change(
            op=op,
            before=self._row(envelope.get("before"), "before"),
            after=self._row(envelope.get("after"), "after"),
            source=_source(source),
            key=key if isinstance(key, dict) else None,
            ts_ms=_int(envelope.get("ts_ms")) or 0,
        )

    def _row(self, value: Any, side: str) -> Any:
        if value is None:
            return None
        if not isinstance(value, dict):
            raise DecodeError("not-debezium", f"'{side}' is not a row object")
        if self._validate is None:
            return value
        try:
            return self._validate(value)
        except ValidationError as error:
            raise DecodeError("invalid", f"{side} row: {first_error(error)}") from None

    def _avro(self, data: bytes) -> Any:
        """The envelope of a registry-framed value, read with its id's writer schema."""
        if len(data) < HEADER_SIZE:
            raise DecodeError(
                "not-avro", f"the value has {len(data)} bytes, fewer than a registry header"
            )
        if self._registry is None:
            raise DecodeError(
                "registry-framed",
                f"the value is in the schema registry wire format (schema id {schema_id(data)})"
                ", and no [schema_registry] is configured to read it",
            )
        ident = schema_id(data)
        writer = self._registry.writer_schema(ident)
        body = io.BytesIO(data)
        body.seek(HEADER_SIZE)
        try:
            envelope = schemaless_reader(body, writer, None)
        except _BAD_BODY as error:
            raise DecodeError(
                "not-avro", f"the value does not match schema id {ident}: {error!r}"
            ) from None
        if body.tell() != len(data):
            raise DecodeError(
                "not-avro",
                f"{len(data) - body.tell()} bytes left over after the body of schema id {ident}",
            )
        return envelope


def _json(data: bytes, what: str) -> Any:
    try:
        return json.loads(data)
    except (UnicodeDecodeError, ValueError) as error:
        raise DecodeError("not-json", f"the record {what} is not JSON: {error}") from None


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _source(block: dict[str, Any]) -> SourceInfo:
    try:
        return SourceInfo(
            db=str(block["db"]),
            schema=str(block["schema"]),
            table=str(block["table"]),
            lsn=_int(block.get("lsn")),
            tx_id=_int(block.get("txId")),
            ts_ms=_int(block.get("ts_ms")) or 0,
            snapshot=str(block.get("snapshot", "false")) not in ("false", "None"),
            connector=str(block.get("name", "")),
        )
    except KeyError as missing:
        raise DecodeError(
            "not-debezium", f"the 'source' block has no {missing} (not a PostgreSQL change)"
        ) from None
