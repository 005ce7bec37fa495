"""Tracing, metrics, health probes and trace-aware logs for a running service.

Everything is off unless configured, and off means ``instrument=None``: the
runtime then pays one ``is None`` check per record. ``choreo run`` reads:

- ``OTEL_EXPORTER_OTLP_ENDPOINT`` (or ``OTEL_TRACES_EXPORTER=otlp|console``):
  traces on, exported in batches over OTLP/HTTP, or gRPC with
  ``OTEL_EXPORTER_OTLP_PROTOCOL=grpc``; ``OTEL_TRACES_EXPORTER=none`` turns
  them off and ``OTEL_SERVICE_NAME`` renames the service in traces.
- ``CHOREO_METRICS_PORT`` (or ``--metrics-port``): ``/metrics``, ``/healthz``
  and ``/readyz`` on that port, bound to ``CHOREO_METRICS_HOST`` (default
  127.0.0.1; a container needs 0.0.0.0).
- ``CHOREO_LOG_FORMAT=json``: one JSON object per log line, with trace ids.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from opentelemetry import trace
from opentelemetry.sdk.resources import SERVICE_NAME
from opentelemetry.sdk.trace import TracerProvider

from choreo._errors import ConfigError
from choreo._observability.fanout import Fanout
from choreo._observability.http import ProbeServer
from choreo._observability.logs import install_logging
from choreo._observability.metrics import Metrics
from choreo._observability.tracing import Tracing, tracer_provider_from_env
from choreo._runtime.instrument import Instrumentation
from choreo._transport.base import WATERMARKS_TIMEOUT_S

if TYPE_CHECKING:
    from choreo._runtime.runner import ServiceRunner

__all__ = [
    "Metrics",
    "Observability",
    "Tracing",
    "build_instrumentation",
    "install_logging",
    "tracer_provider_from_env",
]

log = logging.getLogger("choreo.observability")

DEFAULT_METRICS_HOST = "127.0.0.1"
READY_POLL_AGE_S = 10.0
"""Not ready when the consumer loop has not come back from a poll for this long."""
REFRESH_TIMEOUT_S = WATERMARKS_TIMEOUT_S + 1.0
"""How long a scrape waits for the event loop to read lag and in-flight."""


def build_instrumentation(
    service: str,
    group_id: str | None = None,
    *,
    tracer_provider: trace.TracerProvider | None = None,
    metrics: Metrics | None = None,
) -> Instrumentation | None:
    """What ``ServiceRunner(instrument=...)`` takes: None, one part, or both behind one seam."""
    parts: list[Instrumentation] = []
    if tracer_provider is not None:
        parts.append(Tracing(service, tracer_provider, group_id))
    if metrics is not None:
        parts.append(metrics)
    if not parts:
        return None
    return parts[0] if len(parts) == 1 else Fanout(parts)


class Observability:
    """What ``choreo run`` switches on around one runner, and its orderly shutdown.

    ``probes`` is the (host, port) of the metrics and health endpoint, or
    None; it needs ``metrics``.
    """

    def __init__(
        self,
        service: str,
        group_id: str | None = None,
        *,
        tracer_provider: TracerProvider | None = None,
        metrics: Metrics | None = None,
        probes: tuple[str, int] | None = None,
    ) -> None:
        if probes is not None and metrics is None:
            raise ConfigError("the metrics and health endpoint needs metrics")
        self.tracer_provider = tracer_provider
        self.metrics = metrics
        self.instrument = build_instrumentation(
            service, group_id, tracer_provider=tracer_provider, metrics=metrics
        )
        self._probes = probes
        self._server: ProbeServer | None = None

    @classmethod
    def from_env(
        cls,
        service: str,
        group_id: str,
        *,
        metrics_port: int | None = None,
        metrics_host: str | None = None,
    ) -> Observability:
        """Traces from the ``OTEL_*`` variables, metrics when a port is given or set.

        The tracer provider becomes OpenTelemetry's global one, so spans that
        handlers start themselves (an instrumented HTTP or database client)
        are children of the record's span.
        """
        provider = tracer_provider_from_env(service)
        if provider is not None:
            trace.set_tracer_provider(provider)
        if metrics_port is None:
            metrics_port = _port(os.environ.get("CHOREO_METRICS_PORT"))
        if metrics_port is None:
            return cls(service, group_id, tracer_provider=provider)
        host = metrics_host or os.environ.get("CHOREO_METRICS_HOST") or DEFAULT_METRICS_HOST
        return cls(
            service,
            group_id,
            tracer_provider=provider,
            metrics=Metrics(service),
            probes=(host, metrics_port),
        )

    @property
    def url(self) -> str | None:
        """Base URL of the metrics and health endpoint (its real port once started)."""
        if self._server is not None:
            return self._server.url
        return None if self._probes is None else f"http://{self._probes[0]}:{self._probes[1]}"

    def start(self, runner: ServiceRunner) -> None:
        """Serve the probes; call it on the runner's event loop, after ``runner.start()``."""
        if self._probes is None or self.metrics is None:
            return
        host, port = self._probes
        self._server = ProbeServer(
            host,
            port,
            metrics=_scraper(self.metrics, runner, asyncio.get_running_loop()),
            readiness=lambda: _not_ready(runner),
        )
        self._server.start()

    def close(self) -> None:
        """Stop serving, then flush batched spans: the last ones often explain the exit."""
        if self._server is not None:
            self._server.close()
            self._server = None
        if self.tracer_provider is not None:
            self.tracer_provider.shutdown()

    def describe(self) -> str:
        """Two summary lines for the operator: where traces and metrics go."""
        if self.tracer_provider is None:
            traces = "off (set OTEL_EXPORTER_OTLP_ENDPOINT)"
        else:
            name = self.tracer_provider.resource.attributes.get(SERVICE_NAME)
            target = (
                os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
                or os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
                or os.environ.get("OTEL_TRACES_EXPORTER")
            )
            traces = f"{target} as service {name!r}"
        url = self.url
        metrics = "off (set CHOREO_METRICS_PORT)" if url is None else f"{url}/metrics"
        if url is not None:
            metrics += ", /healthz, /readyz"
        return f"  traces     {traces}\n  metrics    {metrics}"


def _port(value: str | None) -> int | None:
    if not value:
        return None
    try:
        port = int(value)
    except ValueError:
        port = -1
    if not 0 <= port <= 65535:
        raise ConfigError(f"CHOREO_METRICS_PORT={value!r}: expected a port number (0 for any)")
    return port


def _scraper(
    metrics: Metrics, runner: ServiceRunner, loop: asyncio.AbstractEventLoop
) -> Callable[[], bytes]:
    """Render on the server's thread, after the loop refreshed lag and in-flight.

    If the loop does not answer in time (a sync handler holding it) or is
    closing, the counters are served with the gauges as last read.
    """

    def scrape() -> bytes:
        try:
            refreshed = asyncio.run_coroutine_threadsafe(metrics.refresh(runner), loop)
        except RuntimeError as error:  # the loop is closed
            log.debug("metrics gauges not refreshed: %s", error)
            return metrics.render()
        try:
            refreshed.result(REFRESH_TIMEOUT_S)
        except TimeoutError:
            refreshed.cancel()
            log.warning("metrics: the event loop did not answer within %ss", REFRESH_TIMEOUT_S)
        except Exception as error:
            log.warning("metrics: cannot read lag: %r", error)
        return metrics.render()

    return scrape


def _not_ready(runner: ServiceRunner) -> str | None:
    """Ready once partitions are assigned and while the consumer loop keeps polling.

    Runs on the server's thread: it only reads two values the loop replaces
    whole, so no coordination with the loop is needed.
    """
    if not runner.workers:
        return "no partitions assigned"
    for tp, why in list(runner.stopped.items()):
        return f"partition {tp.topic}[{tp.partition}] stopped: {why}"
    if not runner.polled_at:  # assigned inside the first poll, which has not returned yet
        return "the consumer loop has not polled yet"
    silent = time.monotonic() - runner.polled_at
    if silent > READY_POLL_AGE_S:
        return f"the consumer loop has not polled for {silent:.0f}s"
    return None
