"""``/metrics``, ``/healthz`` and ``/readyz`` on one small HTTP port.

For Prometheus and container probes. Served from daemon threads, not the
event loop: a sync handler holding the loop must not make scrapes or
liveness probes time out. The callbacks decide how to reach the loop's state.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST

from choreo._errors import ConfigError

log = logging.getLogger("choreo.observability")

SHUTDOWN_POLL_S = 0.1
"""How often the server looks for ``close``: a service's exit waits at most this long."""

Metrics = Callable[[], bytes]
Readiness = Callable[[], str | None]
"""None when ready, else why not (sent with the 503)."""


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(
        self, address: tuple[str, int], metrics: Metrics | None, readiness: Readiness
    ) -> None:
        self.metrics = metrics
        self.readiness = readiness
        super().__init__(address, _Handler)


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:
        path = self.path.partition("?")[0]
        if path == "/healthz":
            self._reply(200, b"ok\n")
        elif path == "/readyz":
            problem = self.server.readiness()
            if problem is None:
                self._reply(200, b"ready\n")
            else:
                self._reply(503, f"not ready: {problem}\n".encode())
        elif path == "/metrics" and self.server.metrics is not None:
            try:
                body = self.server.metrics()
            except Exception as error:
                log.warning("metrics scrape failed: %r", error)
                self._reply(500, f"{error!r}\n".encode())
            else:
                self._reply(200, body, CONTENT_TYPE_LATEST)
        else:
            self._reply(404, b"not found: try /metrics, /healthz or /readyz\n")

    def _reply(self, status: int, body: bytes, content_type: str = "text/plain") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        """Silent: probes every few seconds would drown the service's own log."""


class ProbeServer:
    """Started by ``start``, stopped by ``close``; port 0 picks a free port."""

    def __init__(
        self, host: str, port: int, *, metrics: Metrics | None, readiness: Readiness
    ) -> None:
        self._address = (host, port)
        self._metrics = metrics
        self._readiness = readiness
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """``http://host:port`` as bound (the real port once started)."""
        host, port = self._address if self._server is None else self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> None:
        try:
            self._server = _Server(self._address, self._metrics, self._readiness)
        except OSError as error:
            host, port = self._address
            raise ConfigError(
                f"cannot serve metrics and probes on {host}:{port}: {error}"
            ) from None
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            args=(SHUTDOWN_POLL_S,),
            name="choreo-probes",
            daemon=True,
        )
        self._thread.start()

    def close(self) -> None:
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join()
        self._server = None
