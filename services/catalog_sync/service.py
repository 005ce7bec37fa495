"""The pipeline as a choreo service: one batch handler on the products change topic.

Per batch, in one database transaction: read the lookups, stage each change
(transform, enrich, validate), reject the invalid ones to the dead-letter
topic, bulk load the rest and move the watermark. The rejections are sent
after the transaction committed (``BatchContext.reject``), so a crash in
between re-delivers the batch: it loads nothing twice and rejects again.
"""

from __future__ import annotations

from dataclasses import dataclass

import choreo
from choreo.cdc import CdcSource, Change
from services.catalog_sync.pipeline import Staged, stage
from services.catalog_sync.rows import InvalidProduct, ProductRow
from services.catalog_sync.settings import Settings
from services.catalog_sync.warehouse import Position, Warehouse

LOAD_RETRY = choreo.RetryPolicy(max_attempts=8, initial_interval_s=0.5, max_interval_s=10)
"""About a minute of tries before a batch is parked: rides out a database restart."""


@dataclass(frozen=True)
class CatalogSync:
    """What ``build`` wires: the service, the connector it reads, the warehouse it loads."""

    settings: Settings
    service: choreo.Service
    source: CdcSource
    warehouse: Warehouse


def build(settings: Settings) -> CatalogSync:
    """The service and connector for ``settings``; nothing connects until the first batch."""
    source = CdcSource(
        name=settings.connector,
        database=settings.database,
        tables=[settings.source_table],
        topic_prefix=settings.topic_prefix,
    )
    warehouse = Warehouse(settings.dsn, settings.reporting_schema, settings.service)
    svc = choreo.Service(settings.service, retry=LOAD_RETRY)

    @svc.on_change(
        settings.source_table,
        source=source,
        model=ProductRow,
        max_size=settings.max_batch,
        max_wait_s=settings.max_wait_s,
    )
    async def load_products(changes: list[Change[ProductRow]], ctx: choreo.BatchContext) -> None:
        position = Position(
            lsn=max(change.source.lsn or 0 for change in changes),
            source_ts=max(change.source.committed_at for change in changes),
        )
        async with warehouse.transaction() as load:
            lookups = await load.lookups()
            staged: list[Staged] = []
            rejected = 0
            for change in changes:
                try:
                    staged.append(stage(change, lookups))
                except InvalidProduct as invalid:
                    ctx.reject(change, invalid)
                    rejected += 1
            await load.apply(staged, position, rejected)

    return CatalogSync(settings, svc, source, warehouse)
