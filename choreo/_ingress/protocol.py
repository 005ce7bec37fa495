"""uvicorn as the ingress runs it: a deadline on the request head, caps, our own signals.

uvicorn bounds idle keep-alive connections but not a client that opens a
connection and sends its request line and headers a byte at a time: such a
connection is held for as long as the client likes, and enough of them use up
the concurrency cap for everyone. Here a connection whose head is not complete
``header_timeout_s`` after it opened (or after its previous response) is closed.
The body has its own deadline in the app.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from typing import Any

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from choreo._config import IngressConfig


def guarded_protocol(header_timeout_s: float) -> type[H11Protocol]:
    """The protocol class to give ``uvicorn.Config(http=...)``."""

    class GuardedH11Protocol(H11Protocol):
        _head_deadline: asyncio.TimerHandle | None = None

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm_head_deadline()

        def connection_lost(self, exc: Exception | None) -> None:
            if self._head_deadline is not None:
                self._head_deadline.cancel()
            super().connection_lost(exc)

        def on_response_complete(self) -> None:
            super().on_response_complete()
            self._arm_head_deadline()  # the next request on this connection gets its own

        def _arm_head_deadline(self) -> None:
            if self._head_deadline is not None:
                self._head_deadline.cancel()
            self._head_deadline = self.loop.call_later(header_timeout_s, self._head_overdue)

        def _head_overdue(self) -> None:
            """Close the connection if the request head still has not arrived."""
            if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
                self.logger.info("closing %s: request head not complete in time", self._peer())
                self.transport.close()

        def _peer(self) -> str:
            return f"{self.client[0]}:{self.client[1]}" if self.client else "a client"

    return GuardedH11Protocol


class _Server(uvicorn.Server):
    """Stopped by the event loop's signal handlers (``server.serve``), not uvicorn's.

    uvicorn re-raises a caught SIGTERM after its graceful shutdown, so the process
    would die with 143 although it drained; the ingress exits 0 instead.
    """

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def uvicorn_server(settings: IngressConfig, app: Any) -> uvicorn.Server:
    """The server: h11 with the head deadline and size cap, a connection cap, and a graceful
    shutdown long enough for a request that just started to finish."""
    return _Server(
        uvicorn.Config(
            app,
            http=guarded_protocol(settings.header_timeout_s),
            h11_max_incomplete_event_size=settings.max_header_bytes,
            limit_concurrency=settings.max_connections,
            timeout_graceful_shutdown=int(settings.body_timeout_s + settings.publish_timeout_s) + 1,
            lifespan="off",
            log_level="warning",
            access_log=False,
            server_header=False,
        )
    )
