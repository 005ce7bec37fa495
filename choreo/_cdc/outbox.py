"""The transactional outbox writer: an event becomes a row in the caller's transaction.

Writing the business change and the event in one database transaction is the
point of the pattern: either both commit or neither does, so no event is
published for a rolled-back change and none is lost for a committed one. The
relay (``OutboxRelay``) then publishes committed rows from the WAL.

The row holds exactly what a direct produce would send: ``payload`` is
``Codec.encode(event)`` and the header columns come from the same function
that encodes a direct produce (``choreo._emitter.EventEncoder``).

Works with any DB-API-style object that has ``execute(query, params)`` with
``%(name)s`` placeholders: a psycopg 3 ``Connection`` or ``Cursor`` for
:meth:`Outbox.write`, an ``AsyncConnection`` or ``AsyncCursor`` for
:meth:`Outbox.write_async`. Nothing is committed here; psycopg opens a
transaction on first use unless the connection is in autocommit mode (then
each write commits on its own, use ``with conn.transaction():``).
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Mapping
from typing import Any, Protocol

from choreo import _headers
from choreo._cdc.outbox_table import COLUMNS, DEFAULT_TABLE, insert_sql
from choreo._config import ServiceConfig
from choreo._emitter import EventEncoder
from choreo._runtime.instrument import Instrumentation
from choreo._schemas import Catalog, Codec, Event
from choreo._schemas.registry_setup import registry_for


class Executes(Protocol):
    """A psycopg 3 ``Connection`` or ``Cursor`` (anything with ``execute(query, params)``)."""

    def execute(self, query: Any, params: Any, /) -> Any: ...


class ExecutesAsync(Protocol):
    """A psycopg 3 ``AsyncConnection`` or ``AsyncCursor``."""

    def execute(self, query: Any, params: Any, /) -> Awaitable[Any]: ...


class Outbox:
    """``Outbox(catalog, source="orders").write(conn, event)`` inside your transaction.

    ``source`` is the ``ce_source`` of every event written (a direct produce
    uses the service name). ``instrument``, if given, injects the current
    trace context, so the relayed event continues the trace of the request
    that wrote it.

    ``config`` is the service's: with it, events of topics written in the schema registry
    wire format (``wire_format = "registry"`` in catalog.toml) are framed with their schema
    id from its ``[schema_registry]``, so a relayed row is byte for byte what a direct
    produce sends, and the record size limit is the service's. Without it such an event
    is refused with an error naming its topic, never written in the wrong format. The
    schema id is looked up on the first write of each version (an HTTP call inside the
    caller's transaction, then cached); nothing is registered.
    """

    def __init__(
        self,
        catalog: Catalog,
        *,
        source: str,
        table: str = DEFAULT_TABLE,
        instrument: Instrumentation | None = None,
        config: ServiceConfig | None = None,
    ) -> None:
        self.catalog = catalog
        self.table = table
        codec = (
            Codec(catalog)
            if config is None
            else Codec(
                catalog,
                max_bytes=config.max_record_bytes,
                registry=registry_for(config, catalog),
            )
        )
        self._encoder = EventEncoder(catalog, codec, source, instrument)
        self._insert = insert_sql(table)

    def row(
        self,
        event: Event,
        *,
        correlation_id: str | None = None,
        causation_id: str | None = None,
        key: str | None = None,
        aggregate_type: str | None = None,
        event_id: str | None = None,
    ) -> dict[str, Any]:
        """The column values for ``event``; an event that starts a transaction correlates itself.

        Raises ``TopologyError`` for an event type no catalog topic carries, so
        a row the relay could not route is never written. ``event_id``, if
        given, must be a UUID (the ``id`` column's type).
        """
        event_id = event_id or _headers.new_event_id()
        record = self._encoder.prepare(
            event,
            correlation_id=correlation_id,
            causation_id=causation_id,
            key=key,
            event_id=event_id,
        )
        by_header: Mapping[str, bytes] = dict(record.headers)
        row: dict[str, Any] = {
            column.name: _text(by_header.get(column.header))
            for column in COLUMNS
            if column.header is not None
        }
        row.update(
            id=uuid.UUID(event_id),
            aggregatetype=aggregate_type or record.topic,
            aggregateid=record.key.decode(),
            topic=record.topic,
            payload=record.value,
        )
        return row

    def write(
        self,
        conn: Executes,
        event: Event,
        *,
        correlation_id: str | None = None,
        causation_id: str | None = None,
        key: str | None = None,
        aggregate_type: str | None = None,
        event_id: str | None = None,
    ) -> str:
        """Insert the event in the connection's open transaction; returns its event id.

        ``key`` overrides the topic's key field (the aggregate id);
        ``aggregate_type`` is informative and defaults to the topic name.
        """
        row = self.row(
            event,
            correlation_id=correlation_id,
            causation_id=causation_id,
            key=key,
            aggregate_type=aggregate_type,
            event_id=event_id,
        )
        conn.execute(self._insert, row)
        return str(row["id"])

    async def write_async(
        self,
        conn: ExecutesAsync,
        event: Event,
        *,
        correlation_id: str | None = None,
        causation_id: str | None = None,
        key: str | None = None,
        aggregate_type: str | None = None,
        event_id: str | None = None,
    ) -> str:
        """:meth:`write` for psycopg's ``AsyncConnection`` / ``AsyncCursor``."""
        row = self.row(
            event,
            correlation_id=correlation_id,
            causation_id=causation_id,
            key=key,
            aggregate_type=aggregate_type,
            event_id=event_id,
        )
        await conn.execute(self._insert, row)
        return str(row["id"])


def _text(value: bytes | None) -> str | None:
    return None if value is None else value.decode()
