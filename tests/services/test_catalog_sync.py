"""The catalog sync's steps without a broker: pure functions, then the service on TestService.

``TestService`` drives ``on_change`` handlers: a Debezium change is bytes on
the change topic (``send_raw``). The load itself goes to the real
PostgreSQL, into a reporting schema of the test's own.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import psycopg
import pytest
from catalog_kit import change, own_pipeline, snapshot

from choreo._runtime import dead_letters as dlq
from choreo.testing import TestService
from services.catalog_sync import report
from services.catalog_sync.pipeline import Category, Lookups, PriceBand, enrich, transform, validate
from services.catalog_sync.rows import InvalidProduct, ProductRow
from services.catalog_sync.service import CatalogSync, build
from services.catalog_sync.settings import Settings

LOOKUPS = Lookups(
    categories={"books": Category("Books", "Media")},
    eur_rates={"EUR": Decimal(1), "USD": Decimal("0.92")},
    bands=(
        PriceBand("budget", Decimal(0), Decimal(20)),
        PriceBand("standard", Decimal(20), None),
    ),
)


def row(**values: Any) -> ProductRow:
    base = {"id": 1, "sku": "BOO-000001", "name": "Dune", "category": "books", "price": "25.00"}
    return ProductRow.model_validate({**base, "currency": "USD", **values})


# --- transform, enrich, validate -----------------------------------------------------------


def test_a_row_is_normalized_enriched_and_validated_into_a_snapshot() -> None:
    draft = transform(row(sku=" boo-000001 ", name="  Dune \n Messiah ", category="BOOKS "))
    snapshot = validate(enrich(draft, LOOKUPS))
    assert (snapshot.sku, snapshot.name, snapshot.category_code) == (
        "BOO-000001",
        "Dune Messiah",
        "books",
    )
    assert (snapshot.category_name, snapshot.department) == ("Books", "Media")
    assert (snapshot.price_eur, snapshot.price_band) == (Decimal("23.00"), "standard")


@pytest.mark.parametrize(
    ("values", "reason"),
    [
        (
            {"price": "-1.00"},
            "price: Input should be greater than or equal to 0 (got Decimal('-1.00'))",
        ),
        ({"category": "toys"}, "category: 'toys' is not a known category"),
        ({"currency": "xxx"}, "currency: no exchange rate for 'XXX'"),
        ({"sku": "dune"}, "sku: String should match pattern"),
        ({"name": "   "}, "name: String should have at least 1 character (got '')"),
        ({"name": None}, "name: Input should be a valid string (got None)"),
    ],
)
def test_an_invalid_row_is_refused_naming_the_field_and_why(
    values: dict[str, Any], reason: str
) -> None:
    with pytest.raises(InvalidProduct) as refused:
        validate(enrich(transform(row(**values)), LOOKUPS))
    assert str(refused.value).startswith(f"product 1: {reason}")


def test_every_problem_of_a_row_is_named_at_once() -> None:
    with pytest.raises(InvalidProduct) as refused:
        validate(enrich(transform(row(category="toys", sku="x")), LOOKUPS))
    assert [p.split(":")[0] for p in refused.value.problems] == ["category", "sku"]


# --- the service, in memory, loading into PostgreSQL ---------------------------------------


@pytest.fixture
def sync(postgres: str) -> Iterator[CatalogSync]:
    with own_pipeline(postgres, max_batch=1000, max_wait_s=0.05) as settings:
        yield build(settings)


def product(product_id: int, **values: Any) -> dict[str, Any]:
    return {
        "id": product_id,
        "sku": f"BOO-{product_id:06d}",
        "name": f"Book {product_id}",
        "category": "books",
        "price": Decimal("12.50"),
        "currency": "EUR",
        **values,
    }


def send(t: TestService, sync: CatalogSync, changes: list[tuple[str, dict[str, Any], int]]) -> None:
    """Publish the changes in one go (one batch), then wait until they are handled."""
    topic = sync.source.topic_of(sync.settings.source_table)
    for op, values, lsn in changes:
        key = f'{{"id":{values["id"]}}}'.encode()
        t.send_raw(topic, change(op, values, lsn), key=key, settle=False)
    t.settle()


def watermark(settings: Settings) -> report.Watermark | None:
    with psycopg.connect(settings.dsn) as conn:
        return report.watermark(conn, settings.reporting_schema, settings.service)


@pytest.mark.stack
def test_a_batch_is_loaded_deletes_applied_and_invalid_rows_dead_lettered_with_the_reason(
    sync: CatalogSync,
) -> None:
    topic = sync.source.topic_of(sync.settings.source_table)
    with TestService(sync.service) as t:
        send(
            t,
            sync,
            [
                ("c", product(1), 100),
                ("c", product(2, price=Decimal("150.00")), 200),
                ("c", product(3, category="toys"), 300),
                ("u", product(1, name="Book one, 2nd ed."), 400),
                ("c", product(4), 500),
                ("d", {"id": 4}, 600),
            ],
        )
        parked = t.dead_letters(topic)
    assert snapshot(sync.settings) == {
        1: ("BOO-000001", "Book one, 2nd ed.", "books", Decimal("12.50"), "EUR"),
        2: ("BOO-000002", "Book 2", "books", Decimal("150.00"), "EUR"),
    }
    mark = watermark(sync.settings)
    assert mark is not None
    assert (mark.last_lsn, mark.changes_loaded, mark.batches) == (600, 5, 1)
    assert mark.last_source_ts == datetime.fromtimestamp(1_790_000_000, UTC)
    [invalid] = parked
    assert invalid.key == b'{"id":3}'
    assert invalid.header(dlq.REASON) == b"rejected"
    assert invalid.header(dlq.ERROR_TYPE) == b"services.catalog_sync.rows.InvalidProduct"
    assert (
        invalid.header(dlq.ERROR_MESSAGE) == b"product 3: category: 'toys' is not a known category"
    )


@pytest.mark.stack
def test_a_redelivered_batch_changes_nothing_and_an_old_change_never_wins(
    sync: CatalogSync,
) -> None:
    first = [("c", product(1), 100), ("c", product(2), 200), ("d", {"id": 2}, 300)]
    with TestService(sync.service) as t:
        send(t, sync, first)
        loaded = snapshot(sync.settings)
        send(t, sync, first)  # a crash before the commit of the offsets: all of it again
        send(t, sync, [("u", product(1, name="newer"), 500)])
        send(t, sync, [("u", product(1, name="older"), 400), ("c", product(2), 200)])
    assert loaded == {1: ("BOO-000001", "Book 1", "books", Decimal("12.50"), "EUR")}
    assert snapshot(sync.settings) == {1: ("BOO-000001", "newer", "books", Decimal("12.50"), "EUR")}
    mark = watermark(sync.settings)
    assert mark is not None
    assert (mark.last_lsn, mark.changes_loaded, mark.batches) == (500, 4, 2)
    with psycopg.connect(sync.settings.dsn) as conn:
        loads = report.batches(conn, sync.settings.reporting_schema, sync.settings.service)
    assert [(b.changes, b.loaded) for b in loads] == [(3, 3), (3, 0), (1, 1), (2, 0)]
