"""Run the ingress: resolve routes, open one publisher, serve HTTP with uvicorn until a signal.

SIGTERM or SIGINT drains: the listener closes, requests in flight are answered (each
within its body and publish deadlines), the publisher flushes, and the process exits 0.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from choreo._config import ServiceConfig
from choreo._errors import ChoreoError, ConfigError
from choreo._ingress.app import IngressApp
from choreo._ingress.metrics import IngressMetrics
from choreo._ingress.replay import seen_store
from choreo._ingress.routes import Route, build_routes
from choreo._ingress.signing import Verifier
from choreo._observability import build_instrumentation, tracer_provider_from_env
from choreo._observability.http import ProbeServer
from choreo._publisher import Publisher
from choreo._schemas import Catalog
from choreo._transport.base import Transport
from choreo._transport.registry import make_transport

log = logging.getLogger("choreo.ingress")

READY_TIMEOUT_S = 2.0
"""Budget of the broker check behind ``/readyz`` (probes time out after a few seconds)."""
START_TIMEOUT_S = 10.0

_DELIVERY_TIMEOUT_OPTION = {"confluent": "message.timeout.ms", "aiokafka": "request_timeout_ms"}
"""Each client's own bound on an unacknowledged send: a record the ingress answered 503 for
must not reach the broker later, so the client gives up when the request does."""


def publisher_config(config: ServiceConfig) -> ServiceConfig:
    """``config`` with the client's delivery timeout set to the request's (unless set)."""
    option = _DELIVERY_TIMEOUT_OPTION[config.transport]
    options = {option: str(int(config.ingress.publish_timeout_s * 1000))}
    options.update(config.kafka.client_options)
    kafka = config.kafka.model_copy(update={"client_options": options})
    return config.model_copy(update={"kafka": kafka})


def summary(routes: dict[tuple[str, str], Route], url: str, config: ServiceConfig) -> str:
    settings = config.ingress
    lines = [
        f"choreo ingress listening on {url}",
        f"  transport  {config.transport} -> {config.kafka.bootstrap_servers}",
        f"  signed     HMAC-SHA256 v2{' (and v1)' if settings.accept_v1 else ''}, "
        f"timestamps within {settings.tolerance_s:g}s; bodies up to {settings.max_body_bytes} "
        "bytes",
        "  replays    refused via "
        + ("PostgreSQL (shared)" if settings.replay_dsn else "memory (this process only)"),
        "  routes",
    ]
    lines += [
        f"    {r.method} {r.path:<24} {r.model.event_type:<36} {r.topic}" for r in routes.values()
    ]
    lines.append("  probes     GET /healthz, GET /readyz")
    return "\n".join(lines)


def bind(host: str, port: int) -> socket.socket:
    """The listening socket, bound before uvicorn starts so port 0 is known and printed."""
    try:
        return socket.create_server((host, port), reuse_port=False)
    except OSError as error:
        raise ConfigError(f"cannot listen on {host}:{port}: {error}") from None


async def prepare_topics(transport: Transport, catalog: Catalog, topics: set[str]) -> None:
    """Create the routed topics when the broker answers; a broker that is down is not fatal:
    ``/readyz`` says so and requests get 503 until it is back."""
    try:
        await transport.check_reachable(timeout_s=START_TIMEOUT_S)
        await transport.ensure_topics(
            [spec.topic_config() for spec in catalog.topics.values() if spec.name in topics]
        )
    except ChoreoError as error:
        log.warning("broker not ready at start-up: %s", error)


def _loopback_probes(
    port: int | None,
    metrics: IngressMetrics,
    readiness: Callable[[], Coroutine[Any, Any, str | None]],
) -> ProbeServer | None:
    """``/metrics`` and a ``/readyz`` that says why, on 127.0.0.1 only (None: not asked for).

    Served from a thread; the broker check runs on the ingress's event loop.
    """
    if port is None:
        return None
    loop = asyncio.get_running_loop()

    def why_not_ready() -> str | None:
        future = asyncio.run_coroutine_threadsafe(readiness(), loop)
        return future.result(timeout=READY_TIMEOUT_S + 1)

    return ProbeServer("127.0.0.1", port, metrics=metrics.scrape, readiness=why_not_ready)


def _stopper(server: Any, sig: signal.Signals) -> Callable[[], None]:
    """The loop's handler for ``sig``: log once and let uvicorn drain."""

    def stop() -> None:
        log.info("%s: draining requests in flight", sig.name)
        server.should_exit = True

    return stop


async def serve(config: ServiceConfig, routes: dict[str, str]) -> None:
    """Serve until SIGTERM/SIGINT; events in flight are flushed before the publisher closes."""
    settings = config.ingress
    if settings.secret is None or not settings.secret.get_secret_value():
        raise ConfigError("no signing secret: set CHOREO_INGRESS__SECRET (shared with senders)")
    catalog = Catalog.load(Path(config.schemas_dir))
    resolved = build_routes(routes, catalog, settings.models)
    config = publisher_config(config)
    transport = make_transport(config.transport, config.kafka)
    await prepare_topics(transport, catalog, {r.topic for r in resolved.values()})

    async def readiness() -> str | None:
        try:
            await transport.check_reachable(timeout_s=READY_TIMEOUT_S)
        except ChoreoError as error:
            return str(error)
        return None

    provider = tracer_provider_from_env(settings.source)
    instrument = build_instrumentation(settings.source, tracer_provider=provider)
    from choreo._ingress.protocol import uvicorn_server  # uvicorn: only the server needs it

    dsn = settings.replay_dsn
    seen = seen_store(None if dsn is None else dsn.get_secret_value(), settings.tolerance_s)
    metrics = IngressMetrics(r.path for r in resolved.values())
    probes = _loopback_probes(settings.metrics_port, metrics, readiness)
    sock = bind(settings.host, settings.port)
    try:
        async with Publisher(settings.source, config, catalog, instrument) as publisher:
            app = IngressApp(
                resolved,
                publisher,
                Verifier(
                    settings.secret.get_secret_value(),
                    settings.tolerance_s,
                    accept_v1=settings.accept_v1,
                ),
                seen,
                max_body_bytes=settings.max_body_bytes,
                max_header_bytes=settings.max_header_bytes,
                body_timeout_s=settings.body_timeout_s,
                publish_timeout_s=settings.publish_timeout_s,
                readiness=readiness,
                answered=metrics.answered,
            )
            host, port = sock.getsockname()[:2]
            server = uvicorn_server(settings, app)
            if probes is not None:
                probes.start()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, _stopper(server, sig))
            print(summary(resolved, f"http://{host}:{port}", config), flush=True)
            if probes is not None:
                print(f"  loopback   {probes.url}/metrics, /readyz with reasons", flush=True)
            await server.serve(sockets=[sock])
            log.info("stopped: requests in flight answered, events flushed")
    finally:
        sock.close()
        await seen.close()
        if probes is not None:
            probes.close()
        if provider is not None:
            provider.shutdown()
