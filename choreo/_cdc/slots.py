"""Drop a connector's replication slot and publication once the connector is gone.

Deleting a connector in Kafka Connect leaves its slot in PostgreSQL, and an
abandoned slot keeps every WAL segment from then on until the disk fills.
Dropping it is a separate, explicit step (``choreo cdc delete --drop-slot``),
because a slot is also what lets a re-created connector resume where it was.

Needs psycopg 3 (``pip install 'choreo[postgres]'``); imported only when called.
"""

from __future__ import annotations

import time
from typing import Any

from choreo._cdc.source import PostgresConnector
from choreo._errors import ConfigError, TransportError

RELEASE_TIMEOUT_S = 30.0
"""How long to wait for the deleted connector's task to let go of the slot."""


def connect(dsn: str) -> Any:
    """An autocommit psycopg connection, or a ``ConfigError`` saying what to install."""
    try:
        import psycopg
    except ImportError:
        raise ConfigError("this needs psycopg 3: pip install 'choreo[postgres]'") from None
    try:
        return psycopg.connect(dsn, autocommit=True, connect_timeout=10)
    except psycopg.OperationalError as error:
        raise TransportError(f"cannot connect to PostgreSQL: {error}".strip()) from None


def drop_slot(connector: PostgresConnector, timeout_s: float = RELEASE_TIMEOUT_S) -> bool:
    """Drop the slot (waiting for its reader to stop) and the publication; False if no slot.

    A slot still held after ``timeout_s`` has its reader terminated: the
    caller has deleted the connector, so whatever holds it is a leftover.
    """
    slot, publication = connector.slot_name, connector.publication_name
    with connect(connector.database.dsn) as conn:
        deadline = time.monotonic() + timeout_s
        while True:
            row = conn.execute(
                "SELECT active_pid FROM pg_replication_slots WHERE slot_name = %s", (slot,)
            ).fetchone()
            if row is None:
                dropped = False
                break
            if row[0] is None:
                conn.execute("SELECT pg_drop_replication_slot(%s)", (slot,))
                dropped = True
                break
            if time.monotonic() > deadline:
                conn.execute("SELECT pg_terminate_backend(%s)", (row[0],))
            time.sleep(0.2)
        conn.execute(f'DROP PUBLICATION IF EXISTS "{publication}"')
    return dropped
