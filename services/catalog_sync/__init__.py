"""Catalog sync: the pattern guide's "data pipeline with transformation" on choreo.

A CDC trigger on the ``products`` table; for each change transform (data
mapper), enrich (category, euro price and price band from lookup tables)
and validate (schema check; an invalid change is dead-lettered with the
reason); batches of up to 1,000 bulk loaded into
``reporting.product_snapshot`` with the sync watermark moved in the same
transaction. Modules: ``pipeline`` (the per-change steps), ``warehouse``
(the load), ``service`` (the wiring), ``settings``, ``demo``.

Run it (the stack up, from the repo root)::

    .venv/bin/python -m services.catalog_sync.demo --prepare   # products table, no changes
    .venv/bin/choreo cdc apply services.catalog_sync           # the Debezium connector
    .venv/bin/choreo run services.catalog_sync                 # the loader
    .venv/bin/python -m services.catalog_sync.demo --changes 5000

``CATALOG_SYNC_DSN``, ``_SOURCE_TABLE``, ``_REPORTING_SCHEMA``,
``_SERVICE``, ``_CONNECTOR``, ``_TOPIC_PREFIX``, ``_MAX_BATCH`` and
``_MAX_WAIT_S`` move it elsewhere (see ``settings``). Invalid changes:
``choreo dlq show choreo.dlq.catalog-sync.catalog.public.products``.
"""

from __future__ import annotations

from services.catalog_sync.service import build
from services.catalog_sync.settings import Settings

pipeline = build(Settings.from_env())
svc = pipeline.service
products = pipeline.source
"""The connector ``choreo cdc apply services.catalog_sync`` registers."""
