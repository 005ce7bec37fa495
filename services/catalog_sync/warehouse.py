"""The bulk load: stage a batch with COPY, apply it set-wise, move the watermark, one transaction.

Exactly-once effect on top of at-least-once delivery comes from the source
position each change carries: a product's row (or its delete marker) keeps
the WAL position of the change that produced it, and a change is applied,
and counted, only when it is newer than that. A batch delivered again after
a crash, or a change Debezium re-sends after a Connect restart, changes
nothing and counts nothing; the watermark only takes the greater position.
PostgreSQL's row locks make the changes of one row commit, and so stream,
in position order, which is what makes the comparison sound.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from pathlib import Path

import psycopg
from psycopg import sql

from services.catalog_sync.pipeline import Category, Lookups, PriceBand, Staged

DDL = (Path(__file__).parent / "reporting.sql").read_text()


def reporting_ddl(schema: str) -> sql.Composed:
    """The reporting tables and lookups (``reporting.sql``) in ``schema``; idempotent."""
    return sql.SQL(DDL).format(schema=sql.Identifier(schema))


_STAGE_COLUMNS = (
    "product_id, source_lsn, source_ts, deleted, sku, name, category_code, category_name,"
    " department, price, currency, price_eur, price_band, updated_at"
)
_SESSION = f"""
CREATE TEMP TABLE catalog_sync_stage (
    product_id bigint, source_lsn bigint, source_ts timestamptz, deleted boolean,
    sku text, name text, category_code text, category_name text, department text,
    price numeric, currency text, price_eur numeric, price_band text, updated_at timestamptz
);  -- gone with the session (a connection per load)
CREATE TEMP VIEW catalog_sync_latest AS  -- the last change of each product
    SELECT DISTINCT ON (product_id) {_STAGE_COLUMNS}
    FROM catalog_sync_stage ORDER BY product_id, source_lsn DESC;
"""

_FRESH = """
SELECT count(*) FROM catalog_sync_stage s
LEFT JOIN {schema}.product_snapshot p USING (product_id)
LEFT JOIN {schema}.product_deleted d USING (product_id)
WHERE s.source_lsn > coalesce(greatest(p.source_lsn, d.source_lsn), -1)
"""
_UPSERT = """
INSERT INTO {schema}.product_snapshot AS p
SELECT l.product_id, l.sku, l.name, l.category_code, l.category_name, l.department, l.price,
       l.currency, l.price_eur, l.price_band, l.updated_at, l.source_lsn, l.source_ts, now()
FROM catalog_sync_latest l LEFT JOIN {schema}.product_deleted d USING (product_id)
WHERE NOT l.deleted AND (d.source_lsn IS NULL OR d.source_lsn < l.source_lsn)
ON CONFLICT (product_id) DO UPDATE SET
    sku = excluded.sku, name = excluded.name, category_code = excluded.category_code,
    category_name = excluded.category_name, department = excluded.department,
    price = excluded.price, currency = excluded.currency, price_eur = excluded.price_eur,
    price_band = excluded.price_band, updated_at = excluded.updated_at,
    source_lsn = excluded.source_lsn, source_ts = excluded.source_ts, loaded_at = now()
WHERE p.source_lsn < excluded.source_lsn
"""
_DELETE = """
DELETE FROM {schema}.product_snapshot p USING catalog_sync_latest l
WHERE l.deleted AND p.product_id = l.product_id AND p.source_lsn < l.source_lsn
"""
_MARK_DELETED = """
INSERT INTO {schema}.product_deleted AS d
SELECT product_id, source_lsn FROM catalog_sync_latest WHERE deleted
ON CONFLICT (product_id) DO UPDATE SET source_lsn = greatest(d.source_lsn, excluded.source_lsn)
"""
_WATERMARK = """
INSERT INTO {schema}.sync_watermark AS w
VALUES (%(pipeline)s, %(lsn)s, %(ts)s, %(loaded)s, %(batches)s, now())
ON CONFLICT (pipeline) DO UPDATE SET
    last_lsn = greatest(w.last_lsn, excluded.last_lsn),
    last_source_ts = greatest(w.last_source_ts, excluded.last_source_ts),
    changes_loaded = w.changes_loaded + excluded.changes_loaded,
    batches = w.batches + excluded.batches,
    updated_at = now()
"""
_LOG = """
INSERT INTO {schema}.sync_batches
    (pipeline, changes, loaded, rejected, last_lsn, last_source_ts, loaded_at)
VALUES (%(pipeline)s, %(changes)s, %(loaded)s, %(rejected)s, %(lsn)s, %(ts)s, now())
"""


@dataclass(frozen=True, slots=True)
class Position:
    """Where a batch ends in the source: its highest WAL position and latest commit time."""

    lsn: int
    source_ts: datetime


class Warehouse:
    """The reporting database; each load is a connection and a transaction of its own.

    A connection per batch (a few milliseconds beside a bulk load) keeps
    nothing open between batches: no session to go stale across a database
    restart, none to leak when the service stops, no sharing between the
    partitions' concurrent loads.
    """

    def __init__(self, dsn: str, schema: str, pipeline: str) -> None:
        self._dsn = dsn
        self._pipeline = pipeline
        self._schema_name = schema
        self._schema = sql.Identifier(schema)
        self._created = False

    def _sql(self, text: str) -> sql.Composed:
        return sql.SQL(text).format(schema=self._schema)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Load]:
        """A load in one transaction: committed when the block ends, rolled back if it raises."""
        async with await psycopg.AsyncConnection.connect(self._dsn) as conn:
            if not self._created:
                # two instances starting at once create the tables once
                await conn.execute("SELECT pg_advisory_xact_lock(hashtext('catalog_sync_ddl'))")
                await conn.execute(reporting_ddl(self._schema_name))
                await conn.commit()
                self._created = True
            await conn.execute(_SESSION)
            yield Load(conn, self._sql, self._pipeline)


class Load:
    """One open transaction: read the lookups, then ``apply`` the staged batch."""

    def __init__(
        self,
        conn: psycopg.AsyncConnection[tuple[object, ...]],
        in_schema: Callable[[str], sql.Composed],
        pipeline: str,
    ) -> None:
        self._conn = conn
        self._sql = in_schema
        self._pipeline = pipeline

    async def lookups(self) -> Lookups:
        execute, in_schema = self._conn.execute, self._sql
        categories = await execute(
            in_schema("SELECT code, name, department FROM {schema}.categories")
        )
        rates = await execute(in_schema("SELECT currency, eur_per_unit FROM {schema}.fx_rates"))
        bands = await execute(
            in_schema("SELECT band, min_eur, max_eur FROM {schema}.price_bands ORDER BY min_eur")
        )
        return Lookups(
            categories={
                str(c): Category(str(n), str(d)) for c, n, d in await categories.fetchall()
            },
            eur_rates={str(c): _decimal(r) for c, r in await rates.fetchall()},
            bands=tuple(
                PriceBand(str(b), _decimal(lo), None if hi is None else _decimal(hi))
                for b, lo, hi in await bands.fetchall()
            ),
        )

    async def apply(self, staged: Sequence[Staged], position: Position, rejected: int) -> None:
        """Upsert, delete, count what was new, move the watermark, log the batch."""
        in_schema = self._sql
        async with self._conn.cursor() as cursor:
            async with cursor.copy(
                f"COPY catalog_sync_stage ({_STAGE_COLUMNS}) FROM STDIN"
            ) as copy:
                for row in staged:
                    await copy.write_row(_stage_row(row))
            await cursor.execute(in_schema(_FRESH))
            counted = await cursor.fetchone()
            applied = int(counted[0]) if counted else 0  # type: ignore[call-overload]
            for statement in (_UPSERT, _DELETE, _MARK_DELETED):
                await cursor.execute(in_schema(statement))
            figures = {
                "pipeline": self._pipeline,
                "lsn": position.lsn,
                "ts": position.source_ts,
                "loaded": applied,
                "batches": 1 if applied else 0,
                "changes": len(staged) + rejected,
                "rejected": rejected,
            }
            await cursor.execute(in_schema(_WATERMARK), figures)
            await cursor.execute(in_schema(_LOG), figures)


def _stage_row(row: Staged) -> tuple[object, ...]:
    s = row.snapshot
    if s is None:
        return (row.product_id, row.source_lsn, row.source_ts, True, *(None,) * 10)
    return (
        row.product_id, row.source_lsn, row.source_ts, False, s.sku, s.name, s.category_code,
        s.category_name, s.department, s.price, s.currency, s.price_eur, s.price_band, s.updated_at,
    )  # fmt: skip


def _decimal(value: object) -> Decimal:
    return value if isinstance(value, Decimal) else Decimal(str(value))
