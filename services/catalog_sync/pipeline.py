"""Per change: transform (data mapper), enrich (lookups), validate (schema check).

Pure functions of a change and the lookup tables, so every rule is unit
tested without a database and a batch is staged in one pass with no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

from pydantic import ValidationError

from choreo.cdc import Change
from services.catalog_sync.rows import InvalidProduct, ProductRow, ProductSnapshot

CENT = Decimal("0.01")


@dataclass(frozen=True, slots=True)
class Category:
    name: str
    department: str


@dataclass(frozen=True, slots=True)
class PriceBand:
    name: str
    min_eur: Decimal
    """Inclusive."""
    max_eur: Decimal | None
    """Exclusive; None for the top band."""


@dataclass(frozen=True)
class Lookups:
    """The reference data a batch is enriched with, read once per batch."""

    categories: dict[str, Category]
    eur_rates: dict[str, Decimal]
    """Euros per unit of each currency."""
    bands: tuple[PriceBand, ...]

    def band_of(self, price_eur: Decimal) -> str | None:
        for band in self.bands:
            if band.min_eur <= price_eur and (band.max_eur is None or price_eur < band.max_eur):
                return band.name
        return None


@dataclass(frozen=True, slots=True)
class Draft:
    """A source row with its values normalized (the data mapper's output)."""

    product_id: int
    sku: str | None
    name: str | None
    category_code: str | None
    price: Decimal | None
    currency: str | None
    updated_at: datetime | None


@dataclass(frozen=True, slots=True)
class Staged:
    """What the bulk load gets for one change: a snapshot to upsert, or a delete."""

    product_id: int
    source_lsn: int
    source_ts: datetime
    snapshot: ProductSnapshot | None
    """None for a delete."""


def transform(row: ProductRow) -> Draft:
    """Trim and case-fold codes, collapse whitespace in names, round prices to cents."""
    return Draft(
        product_id=row.id,
        sku=None if row.sku is None else row.sku.strip().upper(),
        name=None if row.name is None else " ".join(row.name.split()),
        category_code=None if row.category is None else row.category.strip().lower(),
        price=None if row.price is None else row.price.quantize(CENT, ROUND_HALF_EVEN),
        currency=None if row.currency is None else row.currency.strip().upper(),
        updated_at=row.updated_at,
    )


def enrich(draft: Draft, lookups: Lookups) -> dict[str, Any]:
    """The draft's fields plus category, euro price and price band (None where unknown)."""
    category = lookups.categories.get(draft.category_code or "")
    rate = lookups.eur_rates.get(draft.currency or "")
    price_eur = (
        None
        if rate is None or draft.price is None
        else (draft.price * rate).quantize(CENT, ROUND_HALF_EVEN)
    )
    return {
        "product_id": draft.product_id,
        "sku": draft.sku,
        "name": draft.name,
        "category_code": draft.category_code,
        "category_name": None if category is None else category.name,
        "department": None if category is None else category.department,
        "price": draft.price,
        "currency": draft.currency,
        "price_eur": price_eur,
        "price_band": None if price_eur is None else lookups.band_of(price_eur),
        "updated_at": draft.updated_at,
    }


def validate(enriched: dict[str, Any]) -> ProductSnapshot:
    """The snapshot, or ``InvalidProduct`` naming every field that is wrong and why."""
    problems = []
    if enriched["category_code"] and enriched["category_name"] is None:
        problems.append(f"category: {enriched['category_code']!r} is not a known category")
    if enriched["currency"] and enriched["price"] is not None and enriched["price_eur"] is None:
        problems.append(f"currency: no exchange rate for {enriched['currency']!r}")
    price_eur = enriched["price_eur"]
    if price_eur is not None and price_eur >= 0 and enriched["price_band"] is None:
        problems.append(f"price_band: no price band covers {price_eur} EUR")
    try:
        snapshot = ProductSnapshot.model_validate(enriched)
    except ValidationError as error:
        looked_up = {"category_name", "department", "price_eur", "price_band"}
        for detail in error.errors():
            field = ".".join(str(part) for part in detail["loc"])
            if field in looked_up and detail["input"] is None:
                continue  # the lookup's own message above says why
            problems.append(f"{field}: {detail['msg']} (got {detail['input']!r})")
        raise InvalidProduct(enriched["product_id"], problems) from None
    if problems:
        raise InvalidProduct(snapshot.product_id, problems)
    return snapshot


def stage(change: Change[ProductRow], lookups: Lookups) -> Staged:
    """One change through the three steps; deletes need only their key."""
    snapshot = None if change.op == "delete" else validate(enrich(transform(change.row), lookups))
    return Staged(
        product_id=change.row.id,
        source_lsn=change.source.lsn or 0,
        source_ts=change.source.committed_at,
        snapshot=snapshot,
    )
