"""Seed product changes into the source table and wait until the reporting table caught up.

For the demo (``run_demo``) and the end-to-end tests (``prepare``, ``seed``,
``wait_caught_up``). From the shell, with the stack up::

    python -m services.catalog_sync.demo --prepare          # table + connector
    choreo run services.catalog_sync                        # in another terminal
    python -m services.catalog_sync.demo --changes 5000     # seed, wait, print figures
"""

from __future__ import annotations

import argparse
import random
import time
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

import psycopg
from psycopg import sql

from choreo.cdc import ConnectClient
from services.catalog_sync import report
from services.catalog_sync.service import build
from services.catalog_sync.settings import Settings
from services.catalog_sync.warehouse import reporting_ddl

SOURCE_DDL = """
CREATE TABLE IF NOT EXISTS {table} (
    id          bigint PRIMARY KEY,
    sku         text NOT NULL,
    name        text NOT NULL,
    category    text NOT NULL,
    price       numeric(12, 2) NOT NULL,
    currency    text NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now()
)
"""
CATEGORIES = ("books", "music", "games", "kitchen", "garden", "tools", "shoes", "bags")
CURRENCIES = ("EUR", "USD", "GBP", "CHF")
WORDS = ("Red", "Quiet", "Swift", "Small", "Grand", "Modern", "Classic", "Bright")
INVALID: dict[str, dict[str, Any]] = {
    "price": {"price": Decimal("-5.00")},
    "category": {"category": "toys"},
    "currency": {"currency": "XXX"},
    "sku": {"sku": "not a sku"},
    "name": {"name": "   "},
}
"""What makes a product invalid, by the field its dead letter names."""
COLUMNS = ("id", "sku", "name", "category", "price", "currency")


@dataclass
class Seeded:
    """What ``seed`` wrote: the products that should reach the reporting table, and the rest."""

    valid: dict[int, dict[str, Any]] = field(default_factory=dict)
    """Live products with valid values, by id, as the source holds them now."""
    invalid: dict[int, str] = field(default_factory=dict)
    """Products inserted with one invalid field, and that field's name."""
    deleted: set[int] = field(default_factory=set)
    ops: dict[str, int] = field(default_factory=lambda: {"insert": 0, "update": 0, "delete": 0})
    began: datetime | None = None
    """The database clock when seeding began."""
    floor_lsn: int = 0
    """The WAL position before the last change: caught up once the watermark reaches it."""


def _table(settings: Settings) -> sql.Composed:
    schema, table = settings.source_table.split(".")
    return sql.SQL("{}.{}").format(sql.Identifier(schema), sql.Identifier(table))


def prepare(
    settings: Settings, connect_url: str | None = None, *, connect_wait_s: float = 120.0
) -> None:
    """Create the source and reporting tables; with ``connect_url`` apply the connector too.

    Connect is waited for up to ``connect_wait_s``: compose runs this as a
    one-shot that starts while the Connect worker is still coming up.
    """
    with psycopg.connect(settings.dsn, autocommit=True) as conn:
        conn.execute(sql.SQL(SOURCE_DDL).format(table=_table(settings)))
        conn.execute(reporting_ddl(settings.reporting_schema))
    if connect_url is not None:
        source = build(settings).source
        client = ConnectClient(connect_url)
        client.wait_reachable(connect_wait_s)
        client.apply(source.name, source.connector_config())
        client.wait_running(source.name)


def _product(rng: random.Random, product_id: int) -> dict[str, Any]:
    category = rng.choice(CATEGORIES)
    return {
        "id": product_id,
        "sku": f"{category[:3].upper()}-{product_id:06d}",
        "name": f"{rng.choice(WORDS)} {category} item {product_id}",
        "category": category,
        "price": Decimal(rng.randrange(100, 250_000)) / 100,
        "currency": rng.choice(CURRENCIES),
    }


def seed(
    settings: Settings,
    changes: int,
    *,
    invalid_every: int = 40,
    per_transaction: int = 50,
    rng: random.Random | None = None,
) -> Seeded:
    """Write ``changes`` inserts, updates and deletes in transactions of ``per_transaction``.

    About 60% insert new products, 25% update a live one, 15% delete one;
    every ``invalid_every``-th change inserts a product with one invalid
    field instead (which is never touched again). Ids continue after the
    table's highest.
    """
    rng = rng or random.Random(7)
    table = _table(settings)
    insert = sql.SQL("INSERT INTO {} ({}) VALUES ({})").format(
        table,
        sql.SQL(", ").join(map(sql.Identifier, COLUMNS)),
        sql.SQL(", ").join(sql.Placeholder() * len(COLUMNS)),
    )
    update = sql.SQL("UPDATE {} SET price = %s, name = %s, updated_at = now() WHERE id = %s")
    update_row = update.format(table)
    delete_row = sql.SQL("DELETE FROM {} WHERE id = %s").format(table)
    out = Seeded()
    with psycopg.connect(settings.dsn) as conn:
        highest = sql.SQL("SELECT coalesce(max(id), 0) FROM {}").format(table)
        next_id = int(_scalar(conn, highest)) + 1
        out.began = _scalar(conn, sql.SQL("SELECT now()"))
        conn.commit()
        for n in range(1, changes + 1):
            if n == changes:
                lsn = sql.SQL("SELECT pg_current_wal_insert_lsn() - '0/0'")
                out.floor_lsn = int(_scalar(conn, lsn))
            roll = rng.random()
            if n % invalid_every == 0:
                kind = rng.choice(sorted(INVALID))
                row = {**_product(rng, next_id), **INVALID[kind]}
                conn.execute(insert, [row[c] for c in COLUMNS])
                out.invalid[next_id] = kind
                out.ops["insert"] += 1
                next_id += 1
            elif not out.valid or roll < 0.6:
                row = _product(rng, next_id)
                conn.execute(insert, [row[c] for c in COLUMNS])
                out.valid[next_id] = row
                out.ops["insert"] += 1
                next_id += 1
            elif roll < 0.85:
                product_id = rng.choice(list(out.valid))
                row = out.valid[product_id]
                row["price"] = Decimal(rng.randrange(100, 250_000)) / 100
                row["name"] = f"{rng.choice(WORDS)} {row['category']} item {product_id} v{n}"
                conn.execute(update_row, (row["price"], row["name"], product_id))
                out.ops["update"] += 1
            else:
                product_id = rng.choice(list(out.valid))
                del out.valid[product_id]
                out.deleted.add(product_id)
                conn.execute(delete_row, (product_id,))
                out.ops["delete"] += 1
            if n % per_transaction == 0 or n == changes:
                conn.commit()
    return out


def _scalar(conn: psycopg.Connection[Any], query: sql.SQL | sql.Composed) -> Any:
    row = conn.execute(query).fetchone()
    assert row is not None, "a query of one aggregate returns one row"
    return row[0]


def wait_caught_up(
    settings: Settings, floor_lsn: int, timeout_s: float = 120.0
) -> report.Watermark:
    """Poll the watermark until it reaches ``floor_lsn``; TimeoutError naming both if not."""
    deadline = time.monotonic() + timeout_s
    with psycopg.connect(settings.dsn, autocommit=True) as conn:
        while True:
            mark = report.watermark(conn, settings.reporting_schema, settings.service)
            if mark is not None and mark.last_lsn >= floor_lsn:
                return mark
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"{settings.service}: watermark at {mark.last_lsn if mark else 'none'}, "
                    f"not {floor_lsn} after {timeout_s:.0f}s: is the service running and the "
                    f"connector {settings.connector} applied (choreo cdc status)?"
                )
            time.sleep(0.1)


def run_demo(
    changes: int = 5000, settings: Settings | None = None, timeout_s: float = 120.0
) -> report.Figures:
    """Seed ``changes``, wait until loaded, and return what the loads did (the demo summary).

    Needs ``prepare`` done and ``choreo run services.catalog_sync`` running.
    """
    settings = settings or Settings.from_env()
    with psycopg.connect(settings.dsn, autocommit=True) as conn:
        after = report.last_batch_id(conn, settings.reporting_schema)
    seeded = seed(settings, changes)
    wait_caught_up(settings, seeded.floor_lsn, timeout_s)
    assert seeded.began is not None
    with psycopg.connect(settings.dsn, autocommit=True) as conn:
        loads = report.batches(conn, settings.reporting_schema, settings.service, after)
    return report.Figures.of(loads, seeded.began)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m services.catalog_sync.demo")
    parser.add_argument(
        "--prepare", action="store_true", help="create the tables, apply the connector"
    )
    parser.add_argument("--connect", default="http://127.0.0.1:8083", help="Kafka Connect URL")
    parser.add_argument("--changes", type=int, default=0, help="seed this many changes and wait")
    args = parser.parse_args(argv)
    settings = Settings.from_env()
    if args.prepare:
        prepare(settings, args.connect)
        print(
            f"{settings.source_table} and {settings.reporting_schema}.* ready; connector "
            f"{settings.connector} running"
        )
    if args.changes:
        print(run_demo(args.changes, settings))


if __name__ == "__main__":
    main()
