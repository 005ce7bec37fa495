"""Helpers of the catalog sync tests: a pipeline of the test's own, and reading it back."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal
from typing import Any

import psycopg
from psycopg import sql

from services.catalog_sync.settings import Settings

SNAPSHOT_COLUMNS = ("sku", "name", "category_code", "price", "currency")


@contextmanager
def own_pipeline(dsn: str, **overrides: Any) -> Iterator[Settings]:
    """Settings naming a table, schema, service and connector of this test; dropped after."""
    tag = uuid.uuid4().hex[:10]
    settings = Settings(
        dsn=dsn,
        source_table=f"public.products_{tag}",
        reporting_schema=f"reporting_{tag}",
        service=f"catalog-sync-{tag}",
        connector=f"catalog-products-{tag}",
        topic_prefix=f"catalog-{tag}",
        **overrides,
    )
    try:
        yield settings
    finally:
        with psycopg.connect(dsn, autocommit=True) as conn:
            schema, table = settings.source_table.split(".")
            conn.execute(
                sql.SQL("DROP TABLE IF EXISTS {}.{}").format(
                    sql.Identifier(schema), sql.Identifier(table)
                )
            )
            conn.execute(
                sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(
                    sql.Identifier(settings.reporting_schema)
                )
            )


def change(op: str, row: dict[str, Any], lsn: int, *, ts_ms: int = 1_790_000_000_000) -> bytes:
    """A Debezium change of a products row (JSON, schemas off, decimals as strings)."""
    values = {k: str(v) if isinstance(v, Decimal) else v for k, v in row.items()}
    before, after = (values, None) if op == "d" else (None, values)
    source = {
        "connector": "postgresql",
        "name": "catalog",
        "ts_ms": ts_ms,
        "snapshot": "false",
        "db": "choreo",
        "schema": "public",
        "table": "products",
        "txId": lsn // 100,
        "lsn": lsn,
    }
    body = {"before": before, "after": after, "source": source, "op": op, "ts_ms": ts_ms + 5}
    return json.dumps(body).encode()


def snapshot(settings: Settings) -> dict[int, tuple[Any, ...]]:
    """The reporting table: product id → (sku, name, category code, price, currency)."""
    query = sql.SQL("SELECT product_id, {} FROM {}.product_snapshot").format(
        sql.SQL(", ").join(map(sql.Identifier, SNAPSHOT_COLUMNS)),
        sql.Identifier(settings.reporting_schema),
    )
    with psycopg.connect(settings.dsn) as conn:
        return {row[0]: tuple(row[1:]) for row in conn.execute(query)}
