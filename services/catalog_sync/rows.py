"""The shapes a product takes: the source row, the loaded snapshot, and a refused one."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field


class ProductRow(BaseModel):
    """A ``products`` row as Debezium sends it.

    Only ``id`` is required: a delete under PostgreSQL's default replica
    identity carries the key columns and None for the rest, and what a
    create or update lacks is for the validation step to name.
    """

    id: int
    sku: str | None = None
    name: str | None = None
    category: str | None = None
    price: Decimal | None = None
    """numeric(12,2), sent as a string (``decimal.handling.mode=string``)."""
    currency: str | None = None
    updated_at: datetime | None = None


class ProductSnapshot(BaseModel):
    """One row of ``reporting.product_snapshot``: the schema every loaded row passes."""

    model_config = ConfigDict(frozen=True)

    product_id: int
    sku: Annotated[str, Field(pattern=r"^[A-Z]{2,6}-[0-9]{3,8}$")]
    name: Annotated[str, Field(min_length=1, max_length=200)]
    category_code: str
    category_name: str
    department: str
    price: Annotated[Decimal, Field(ge=0, le=Decimal("9999999999.99"), decimal_places=2)]
    currency: Annotated[str, Field(pattern=r"^[A-Z]{3}$")]
    price_eur: Annotated[Decimal, Field(ge=0, decimal_places=2)]
    price_band: str
    updated_at: datetime | None


class InvalidProduct(ValueError):
    """A change that must not reach the reporting table; the message lists every problem."""

    def __init__(self, product_id: int, problems: list[str]) -> None:
        super().__init__(f"product {product_id}: {'; '.join(problems)}")
        self.product_id = product_id
        self.problems = problems
