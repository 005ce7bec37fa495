"""Where the catalog sync reads and writes, from ``CATALOG_SYNC_*`` environment variables.

Every name is a setting so that tests (and a second deployment) can run the
same pipeline on tables, a schema and a connector of their own beside the
default one on a shared database.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field, fields
from typing import Any

from choreo.cdc import Postgres

DEFAULT_DSN = "postgresql://choreo:choreo@127.0.0.1:5432/choreo"
_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")


@dataclass(frozen=True, kw_only=True)
class Settings:
    """One pipeline: a products table in, a reporting schema out."""

    dsn: str = field(default=DEFAULT_DSN, repr=False)
    """PostgreSQL URL of both the source table and the reporting schema (``CATALOG_SYNC_DSN``)."""
    source_table: str = "public.products"
    """The captured table, ``schema.table``."""
    reporting_schema: str = "reporting"
    """Holds ``product_snapshot``, the lookups, ``sync_watermark`` and ``sync_batches``."""
    service: str = "catalog-sync"
    """Consumer group, and the pipeline's key in ``sync_watermark``."""
    connector: str = "catalog-products"
    """The Debezium connector (and, by default, its slot and publication)."""
    topic_prefix: str = "catalog"
    """Change topic: ``<topic_prefix>.<source_table>``."""
    max_batch: int = 1000
    """At most this many changes per bulk load."""
    max_wait_s: float = 0.5
    """A smaller batch is loaded once its first change waited this long."""

    def __post_init__(self) -> None:
        names = [*self.source_table.split("."), self.reporting_schema]
        if self.source_table.count(".") != 1 or not all(_NAME.fullmatch(n) for n in names):
            raise ValueError(
                f"{self.service}: source_table {self.source_table!r} must be schema.table and "
                f"reporting_schema {self.reporting_schema!r} a name, of a-z, 0-9 and '_'"
            )
        if not 1 <= self.max_batch <= 100_000 or self.max_wait_s <= 0:
            raise ValueError(
                f"{self.service}: max_batch must be 1..100000 and max_wait_s > 0, "
                f"got {self.max_batch} and {self.max_wait_s}"
            )

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> Settings:
        """Each field from ``CATALOG_SYNC_<FIELD>`` when set, else its default."""
        env = os.environ if environ is None else environ
        given: dict[str, Any] = {}
        for setting in fields(cls):
            value = env.get(f"CATALOG_SYNC_{setting.name.upper()}")
            if value is not None:
                given[setting.name] = (
                    value if setting.type == "str" else _number(setting.name, value)
                )
        return cls(**given)

    @property
    def database(self) -> Postgres:
        return Postgres.from_dsn(self.dsn)


def _number(name: str, value: str) -> float | int:
    try:
        return int(value) if name == "max_batch" else float(value)
    except ValueError:
        raise ValueError(f"CATALOG_SYNC_{name.upper()}={value!r} is not a number") from None
