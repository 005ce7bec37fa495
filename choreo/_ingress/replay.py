"""Seen signatures: a signed request is accepted once within its tolerance window.

Two stores. :class:`ReplayCache` keeps them in the process: enough for one ingress,
forgotten on restart. :class:`PostgresSeen` keeps them in a table every replica shares,
so a request captured and sent again after a restart or to another replica is refused
too (``[ingress] replay_dsn``). Whatever gets past either store carries the event id
derived from its signature, so consumers' idempotency still drops it.

A request holds its signature while it is handled; one that fails (bad body, broker
down) gives it back so the client may send it again, while a concurrent duplicate is
refused. Entries only need to live while their timestamp is fresh: after that the
timestamp check refuses the request anyway.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import logging
from typing import Any, Protocol

from choreo._errors import ConfigError
from choreo._ingress.signing import Rejection

log = logging.getLogger("choreo.ingress")

PURGE_EVERY_S = 60.0
"""How often the shared table drops expired rows (any replica may; deleting is idempotent)."""

_REPLAY = "this signed request was already received (replay)"


class SeenStore(Protocol):
    async def reserve(self, signature: str, timestamp: int, now: float) -> None:
        """Hold ``signature``; :class:`Rejection` (409) if it is already held or used."""

    async def release(self, signature: str) -> None:
        """Give back a signature whose request was not accepted."""

    async def close(self) -> None: ...


class ReplayCache:
    """Signatures accepted within the tolerance window, in this process only."""

    def __init__(self, tolerance_s: float) -> None:
        self._tolerance_s = tolerance_s
        self._expiry: dict[str, float] = {}
        self._queue: list[tuple[float, str]] = []

    def __len__(self) -> int:
        return len(self._expiry)

    async def reserve(self, signature: str, timestamp: int, now: float) -> None:
        self._forget_until(now)
        if signature in self._expiry:
            raise Rejection(409, _REPLAY)
        expiry = timestamp + self._tolerance_s
        self._expiry[signature] = expiry
        heapq.heappush(self._queue, (expiry, signature))

    async def release(self, signature: str) -> None:
        self._expiry.pop(signature, None)

    async def close(self) -> None:
        self._expiry.clear()

    def _forget_until(self, now: float) -> None:
        while self._queue and self._queue[0][0] < now:
            expiry, signature = heapq.heappop(self._queue)
            if self._expiry.get(signature) == expiry:
                del self._expiry[signature]


_DDL = (
    "CREATE TABLE IF NOT EXISTS choreo_ingress_seen ("
    " signature text PRIMARY KEY, expires_at double precision NOT NULL)",
    "CREATE INDEX IF NOT EXISTS choreo_ingress_seen_expiry ON choreo_ingress_seen (expires_at)",
)
_RESERVE = (
    "INSERT INTO choreo_ingress_seen (signature, expires_at) VALUES (%s, %s)"
    " ON CONFLICT (signature) DO UPDATE SET expires_at = EXCLUDED.expires_at"
    " WHERE choreo_ingress_seen.expires_at < %s"
)


class PostgresSeen:
    """Seen signatures in ``choreo_ingress_seen``, shared by every replica (psycopg 3).

    The primary key makes the claim atomic across replicas: of two concurrent inserts
    one wins. When the database does not answer, requests get 503 (fail closed): a
    replay check that cannot run must not let the request through.
    """

    def __init__(self, dsn: str, tolerance_s: float, *, connect_timeout_s: float = 5.0) -> None:
        try:
            import psycopg
        except ImportError:
            raise ConfigError("replay_dsn needs psycopg: pip install 'choreo[postgres]'") from None
        self._psycopg = psycopg
        self._dsn = dsn
        self._tolerance_s = tolerance_s
        self._connect_timeout_s = connect_timeout_s
        self._connection: Any = None
        self._connecting = asyncio.Lock()
        self._purged_at = 0.0

    async def _execute(self, query: str, params: tuple[Any, ...]) -> int:
        """Rows affected; a broken connection is dropped and reopened on the next request."""
        try:
            async with self._connecting:  # concurrent requests open one connection, not many
                if self._connection is None or self._connection.closed:
                    connection = await self._psycopg.AsyncConnection.connect(
                        self._dsn, autocommit=True, connect_timeout=int(self._connect_timeout_s)
                    )
                    for statement in _DDL:
                        await connection.execute(statement)
                    self._connection = connection
            cursor = await self._connection.execute(query, params)
            return int(cursor.rowcount)
        except self._psycopg.Error as error:
            log.warning("seen-signature store (PostgreSQL) failed: %s", error)
            if self._connection is not None:
                await self._connection.close()
                self._connection = None
            raise Rejection(503, "the replay check is unavailable; send it again later") from None

    async def reserve(self, signature: str, timestamp: int, now: float) -> None:
        if now - self._purged_at > PURGE_EVERY_S:
            await self._execute("DELETE FROM choreo_ingress_seen WHERE expires_at < %s", (now,))
            self._purged_at = now
        if await self._execute(_RESERVE, (signature, timestamp + self._tolerance_s, now)) == 0:
            raise Rejection(409, _REPLAY)

    async def release(self, signature: str) -> None:
        """Best effort: a signature not given back only means the client cannot resend it."""
        with contextlib.suppress(Rejection):  # _execute logged why
            await self._execute(
                "DELETE FROM choreo_ingress_seen WHERE signature = %s", (signature,)
            )

    async def close(self) -> None:
        if self._connection is not None:
            await self._connection.close()
            self._connection = None


def seen_store(dsn: str | None, tolerance_s: float) -> SeenStore:
    """PostgreSQL when ``dsn`` is set (replicas, restarts), else this process's memory."""
    return ReplayCache(tolerance_s) if dsn is None else PostgresSeen(dsn, tolerance_s)
