"""Idempotent handling: a redelivered event does not run its handler's side effects twice.

Kafka redelivers after a crash or a rebalance (at-least-once), so a handler
may see an event again. A store remembers, per consumer group and event id,
that the event was handled *and what it emitted*, in the same database
transaction as the handler's own writes (``ctx.db``). A redelivery then skips
the handler and re-sends the stored events with their original ids, so a crash
between "handled" and "emitted" loses nothing and downstream sees duplicates
it can recognise by ``ce_id``.

The embedded default is SQLite (one file per service instance); PostgreSQL is
for services that scale out, since every instance must see the same store.
Entries expire after ``window``: redeliveries come within minutes, not weeks.
"""

from __future__ import annotations

import base64
import json
import sqlite3
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from functools import partial
from pathlib import Path
from typing import Any, Protocol

from choreo._errors import ConfigError
from choreo._outbound import Outbound

PURGE_EVERY = 1000
"""Expired entries are deleted every this many claims."""


@dataclass
class Claim:
    """One event's slot in the store, inside an open transaction."""

    connection: Any
    """The store's connection, in the transaction: write side effects with it (``ctx.db``)."""
    outputs: list[Outbound] | None
    """What the first handling emitted, or None if this is the first handling."""
    recorded: list[Outbound] = field(default_factory=list)


class IdempotencyStore(Protocol):
    def claim(self, group: str, event_id: str) -> Any:
        """A context manager yielding a ``Claim``; commits on success, rolls back on error."""


def _dump(outputs: list[Outbound]) -> str:
    def b64(data: bytes) -> str:
        return base64.b64encode(data).decode()

    return json.dumps(
        [[o.topic, b64(o.key), b64(o.value), [[k, b64(v)] for k, v in o.headers]] for o in outputs]
    )


def _load(text: str) -> list[Outbound]:
    raw = base64.b64decode
    return [
        Outbound(topic, raw(key), raw(value), [(k, raw(v)) for k, v in headers])
        for topic, key, value, headers in json.loads(text)
    ]


class _SqlStore(ABC):
    """The claim protocol both stores share; subclasses supply a connection and placeholders.

    Claim first (insert the key with no outputs; a concurrent claimer waits on
    the row lock), then either read the stored outputs (a redelivery) or run
    the handler and store what it emitted, all in one transaction.
    """

    mark = "?"

    def __init__(self, window: timedelta) -> None:
        self.window_s = window.total_seconds()
        self._claims = 0

    def _sql(self, text: str) -> str:
        return text.replace("?", self.mark)

    @abstractmethod
    def _transaction(self) -> AbstractContextManager[Any]:
        """A cursor inside a transaction that commits on exit and rolls back on error."""

    @contextmanager
    def claim(self, group: str, event_id: str) -> Iterator[Claim]:
        with self._transaction() as cursor:
            cursor.execute(
                self._sql(
                    "INSERT INTO choreo_processed (grp, event_id, processed_at) VALUES (?, ?, ?) "
                    "ON CONFLICT DO NOTHING"
                ),
                (group, event_id, time.time()),
            )
            first = cursor.rowcount == 1
            outputs = None
            if not first:
                cursor.execute(
                    self._sql(
                        "SELECT outputs FROM choreo_processed WHERE grp = ? AND event_id = ?"
                    ),
                    (group, event_id),
                )
                row = cursor.fetchone()
                outputs = _load(row[0]) if row and row[0] is not None else []
            claim = Claim(cursor.connection, outputs)
            yield claim
            if first:
                cursor.execute(
                    self._sql(
                        "UPDATE choreo_processed SET outputs = ? WHERE grp = ? AND event_id = ?"
                    ),
                    (_dump(claim.recorded), group, event_id),
                )
            self._claims += 1
            if self._claims % PURGE_EVERY == 0:
                cursor.execute(
                    self._sql("DELETE FROM choreo_processed WHERE processed_at < ?"),
                    (time.time() - self.window_s,),
                )


_DDL = (
    "CREATE TABLE IF NOT EXISTS choreo_processed ("
    " grp TEXT NOT NULL, event_id TEXT NOT NULL, processed_at DOUBLE PRECISION NOT NULL,"
    " outputs TEXT, PRIMARY KEY (grp, event_id))"
)


class SqliteIdempotency(_SqlStore):
    """The embedded default: a SQLite file next to the service (WAL, survives kill -9)."""

    def __init__(self, path: str | Path, *, window: timedelta = timedelta(days=7)) -> None:
        super().__init__(window)
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._connection = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._connection.execute("PRAGMA journal_mode=WAL")
        self._connection.execute("PRAGMA synchronous=NORMAL")
        self._connection.execute(_DDL)

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Cursor]:
        cursor = self._connection.cursor()
        cursor.execute("BEGIN IMMEDIATE")
        try:
            yield cursor
        except BaseException:
            cursor.execute("ROLLBACK")
            raise
        cursor.execute("COMMIT")


class PostgresIdempotency(_SqlStore):
    """A store every instance of a scaled-out service shares (psycopg 3).

    Connects on first use, not when the service module is imported, so tools that only read
    the module (``choreo docs``, unit tests) need no database. ``setup`` holds the DDL of the
    service's own tables (``CREATE TABLE IF NOT EXISTS ...``), run once on connect, so
    handlers can write to them through ``ctx.db``.
    """

    mark = "%s"

    def __init__(
        self, dsn: str, *, window: timedelta = timedelta(days=7), setup: Sequence[str] = ()
    ) -> None:
        super().__init__(window)
        try:
            import psycopg
        except ImportError:
            raise ConfigError(
                "PostgresIdempotency needs psycopg: pip install 'choreo[postgres]'"
            ) from None
        self._connect = partial(psycopg.connect, dsn, autocommit=True)
        self._setup = (_DDL, *setup)
        self._connection: Any = None

    @contextmanager
    def _transaction(self) -> Iterator[Any]:
        if self._connection is None:
            connection = self._connect()
            for statement in self._setup:
                connection.execute(statement)
            self._connection = connection
        with self._connection.transaction(), self._connection.cursor() as cursor:
            yield cursor


class NoDatabase:
    """``ctx.db`` under ``MemoryIdempotency``: any use says how to get a real one.

    A handler that writes through ``ctx.db`` needs the database its SQL is
    written for; failing on first use with the fix beats an ``AttributeError``
    on ``None``.
    """

    def __getattr__(self, name: str) -> Any:
        raise ConfigError(
            f"ctx.db.{name}: this service runs with an in-memory idempotency store and no "
            "database (TestService's default); a handler that writes through ctx.db needs "
            "one: TestService(svc, idempotency=svc.idempotency) uses the service's own store"
        )


class MemoryIdempotency:
    """Handled event ids and their emits in a dict: one process, gone with it.

    What ``choreo.testing.TestService`` runs a service with unless the test
    asks for the service's own store, so unit tests need no database and
    leave no rows behind. A claim whose handler raises is forgotten, as a
    rolled-back transaction would be.
    """

    def __init__(self) -> None:
        self._outputs: dict[tuple[str, str], list[Outbound]] = {}
        self._db = NoDatabase()

    @contextmanager
    def claim(self, group: str, event_id: str) -> Iterator[Claim]:
        key = (group, event_id)
        claim = Claim(self._db, self._outputs.get(key))
        yield claim
        if claim.outputs is None:
            self._outputs[key] = claim.recorded
