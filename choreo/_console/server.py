"""Put the console's sources together and serve it with uvicorn (the ingress's server).

It binds 127.0.0.1 unless told otherwise: the pages show business data (order ids, event
values), so reaching it from elsewhere is a choice, made with ``--host``.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
from collections.abc import Iterable
from pathlib import Path
from urllib.parse import urlencode

import uvicorn

from choreo._config import ServiceConfig
from choreo._console.app import ConsoleApp, Sources
from choreo._console.guard import Guard
from choreo._console.index import SagaIndex
from choreo._console.trace import jaeger_ui_present
from choreo._docs.model import System, discover
from choreo._errors import ChoreoError
from choreo._ingress.protocol import _Server as QuietServer
from choreo._ingress.server import bind
from choreo._saga.definition import Saga
from choreo._schemas import Catalog
from choreo._security.redact import Redactor
from choreo._transport.confluent import librdkafka_settings

_log = logging.getLogger("choreo.console")

DEFAULT_JAEGER = "http://127.0.0.1:16686"
DEFAULT_URL = "http://127.0.0.1:8070"
"""Where ``choreo console`` serves when started without ``--host``/``--port``."""


def saga_url(saga: str, saga_id: str, base: str = DEFAULT_URL) -> str:
    """The console page of one saga (its timeline and its trace)."""
    return f"{base}/saga?{urlencode({'saga': saga, 'id': saga_id})}"


def sources(
    config: ServiceConfig,
    *,
    token: str | None = None,
    package: str | None = "services",
    jaeger: str = DEFAULT_JAEGER,
    sagas: Iterable[str] = (),
    definitions: Iterable[Saga] = (),
) -> Sources:
    """What the console reads. ``sagas`` limits the list to those names (all when empty);
    ``definitions`` (and the sagas found in ``package``) shape each saga's timeline."""
    settings = librdkafka_settings(config.kafka)
    catalog: Catalog | None = None
    system: System | None = None
    error: str | None = None
    try:
        catalog = Catalog.load(Path(config.schemas_dir))
        if package:
            system = discover(package, catalog, config.ingress.routes)
    except (ChoreoError, ImportError) as failure:
        error = f"{package} with schemas in {config.schemas_dir}: {failure}"
        _log.warning("topology unavailable: %s", error)
    known = [*(system.sagas if system else ()), *definitions]
    return Sources(
        settings=settings,
        index=SagaIndex(settings, sagas),
        guard=Guard(token),
        redact=Redactor(config.kafka.secrets()),
        jaeger=jaeger.rstrip("/"),
        jaeger_ui=jaeger_ui_present(jaeger),
        catalog=catalog,
        system=system,
        system_error=error,
        definitions={(s.name, s.version): s for s in known},
    )


class ConsoleServer:
    """The console on ``host:port`` (0: a free port); :attr:`url` is known once built."""

    def __init__(self, sources: Sources, host: str = "127.0.0.1", port: int = 8070) -> None:
        self._sources = sources
        self._socket = bind(host, port)
        bound_host, bound_port = self._socket.getsockname()[:2]
        self.url = f"http://{bound_host}:{bound_port}"
        # uvicorn's own Server re-raises SIGTERM after draining (exit 143); the ingress's exits 0
        self._server = QuietServer(
            uvicorn.Config(
                ConsoleApp(sources),
                lifespan="off",
                log_level="warning",
                access_log=False,
                server_header=False,
                limit_concurrency=64,
            )
        )

    def run(self) -> None:
        """Serve until :meth:`stop` (or SIGINT/SIGTERM when run on the main thread: exit 0)."""
        self._sources.index.start()
        try:
            asyncio.run(self._serve())
        finally:
            self._socket.close()
            self._sources.index.close()

    def stop(self) -> None:
        self._server.should_exit = True

    async def _serve(self) -> None:
        if threading.current_thread() is threading.main_thread():
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, self.stop)
        await self._server.serve(sockets=[self._socket])
