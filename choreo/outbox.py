"""The transactional outbox: publish an event if and only if your transaction commits.

Instead of producing to Kafka after committing (and losing the event if the
process dies in between), write the event into an outbox table in the same
transaction as the business change::

    from choreo.outbox import Outbox, OutboxRelay

    outbox = Outbox(catalog, source="orders")
    with psycopg.connect(dsn) as conn, conn.transaction():
        conn.execute("UPDATE orders SET status = 'placed' WHERE id = %s", (order_id,))
        outbox.write(conn, OrderPlaced(...), correlation_id=saga_id)

    relay = OutboxRelay(name="orders-outbox", database=Postgres(...))   # in the module

``choreo cdc outbox-init --dsn ...`` creates the table, ``choreo cdc apply``
creates the relay connector. The relay publishes each committed row to the
event's catalog topic with the same key, value bytes and headers a direct
produce would have, so consumers need nothing special: a normal
``@svc.on(OrderPlaced)`` handler receives it. Rolled-back rows are never in
the WAL and never published. Delivery is at least once: after a Connect crash
a few events can be published again with the same ``ce_id``.
"""

from __future__ import annotations

from choreo._cdc.outbox import Outbox
from choreo._cdc.outbox_table import COLUMNS, DEFAULT_TABLE, outbox_ddl
from choreo._cdc.relay import OutboxRelay
from choreo._cdc.source import Postgres

__all__ = ["COLUMNS", "DEFAULT_TABLE", "Outbox", "OutboxRelay", "Postgres", "outbox_ddl"]
