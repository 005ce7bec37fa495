"""Change data capture from PostgreSQL through Debezium, handled like any other message.

Declare the connector in the service module, next to the handlers::

    import choreo
    from choreo.cdc import CdcSource, Change, Postgres, mapper

    customers = CdcSource(
        name="crm-customers",
        database=Postgres(host="db", dbname="crm", user="cdc", password="..."),
        tables=["public.customers"],
        topic_prefix="crm",
    )
    svc = choreo.Service("crm-events")
    to_registered = mapper(CustomerRegistered, rename={"id": "customer_id"})

    @svc.on_change("public.customers", source=customers)
    def on_customer(change: Change[dict[str, Any]], ctx: choreo.Context) -> None:
        if change.op == "create":
            ctx.emit(to_registered(change))

then ``choreo cdc apply services.crm`` creates (or updates) the connector in
Kafka Connect and ``choreo run services.crm`` consumes its topics with the
usual retries and dead letters. See :mod:`choreo._cdc.source` for the fields
and the connector settings choreo picks, :mod:`choreo._cdc.change` for what a
``Change`` holds (snapshots, tombstones, ``REPLICA IDENTITY FULL``, schema
changes).

Delivery is at least once end to end: after a Connect crash the connector
resumes from its last flushed offset and re-sends what followed, so a
handler with side effects outside Kafka should be idempotent (``change.source.lsn``
orders and identifies a change).
"""

from __future__ import annotations

from choreo._cdc.change import Change, Op, SourceInfo, change_decoder
from choreo._cdc.connect import ConnectClient, ConnectorState, Failure, TaskState
from choreo._cdc.mapping import mapper
from choreo._cdc.slots import drop_slot
from choreo._cdc.source import CdcSource, Postgres, PostgresConnector

__all__ = [
    "CdcSource",
    "Change",
    "ConnectClient",
    "ConnectorState",
    "Failure",
    "Op",
    "Postgres",
    "PostgresConnector",
    "SourceInfo",
    "TaskState",
    "change_decoder",
    "drop_slot",
    "mapper",
]
