"""The outbox table: its columns, its DDL, and which column becomes which Kafka header.

One table of (column, header) pairs drives the DDL, the INSERT the writer runs
and the EventRouter's ``table.fields.additional.placement``, so a header can
never be written under one name and published under another. The header
names are the ones a direct produce uses (``choreo._headers``).
"""

from __future__ import annotations

from typing import NamedTuple

from choreo import _headers
from choreo._cdc.source import check_table

DEFAULT_TABLE = "public.choreo_outbox"
TRACEPARENT = "traceparent"
"""W3C trace context header, as the tracing instrumentation injects it."""


class Column(NamedTuple):
    name: str
    ddl: str
    header: str | None
    """The Kafka header the relay publishes this column as (None: not a header)."""


COLUMNS: tuple[Column, ...] = (
    Column("id", "uuid PRIMARY KEY", _headers.ID),
    Column("aggregatetype", "text NOT NULL", None),
    Column("aggregateid", "text NOT NULL", None),
    Column("type", "text NOT NULL", _headers.TYPE),
    Column("topic", "text NOT NULL", None),
    Column("payload", "bytea NOT NULL", None),
    Column("source", "text NOT NULL", _headers.SOURCE),
    Column("event_time", "text NOT NULL", _headers.TIME),
    Column("specversion", "text NOT NULL", _headers.SPECVERSION),
    Column("correlation_id", "text NOT NULL", _headers.CORRELATION),
    Column("causation_id", "text", _headers.CAUSATION),
    Column(TRACEPARENT, "text", TRACEPARENT),
)
"""In header order: a relayed record's headers come out in a direct produce's order."""
CREATED_AT = "created_at"
"""Filled by the database; for housekeeping (deleting relayed rows), never published."""


def quoted(table: str) -> str:
    """``"schema"."table"``: the name exactly as given, as Debezium will look it up."""
    schema, name = check_table("outbox", table).split(".")
    return f'"{schema}"."{name}"'


def outbox_ddl(table: str = DEFAULT_TABLE) -> str:
    """``CREATE TABLE IF NOT EXISTS`` for the outbox, safe to run on every start.

    Rows are only ever inserted: the relay reads inserts from the WAL, so the
    table may be emptied at any time (e.g. rows older than a day) without
    losing events that were already relayed.
    """
    name = quoted(table)
    index = f'"{table.split(".")[1]}_{CREATED_AT}"'
    columns = ",\n".join(f"    {c.name} {c.ddl}" for c in COLUMNS)
    return (
        f"CREATE TABLE IF NOT EXISTS {name} (\n{columns},\n"
        f"    {CREATED_AT} timestamptz NOT NULL DEFAULT now()\n);\n"
        f"CREATE INDEX IF NOT EXISTS {index} ON {name} ({CREATED_AT});\n"
    )


def insert_sql(table: str) -> str:
    """The writer's INSERT, with ``%(column)s`` placeholders for psycopg."""
    names = ", ".join(c.name for c in COLUMNS)
    values = ", ".join(f"%({c.name})s" for c in COLUMNS)
    return f"INSERT INTO {quoted(table)} ({names}) VALUES ({values})"


def header_placement() -> str:
    """EventRouter's ``table.fields.additional.placement``: ``column:header:name`` pairs."""
    return ",".join(f"{c.name}:header:{c.header}" for c in COLUMNS if c.header)
