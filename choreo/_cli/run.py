"""``choreo run MODULE``: run a service module's handlers against Kafka until SIGTERM/SIGINT."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
from pathlib import Path
from typing import Any

from choreo._cli.targets import import_target
from choreo._config import KafkaConfig, ServiceConfig, load_config
from choreo._errors import TopologyError
from choreo._observability import Observability, install_logging
from choreo._runtime.heap import gc_for_serving
from choreo._runtime.runner import ServiceRunner
from choreo._schemas import Catalog
from choreo._security.redact import Redactor, redact_logs
from choreo._service import Service
from choreo._transport.registry import make_transport


def register(commands: argparse._SubParsersAction[Any]) -> None:
    run = commands.add_parser("run", help="run a service module (e.g. services.inventory)")
    run.add_argument("module", help="dotted module path, optionally module:attribute")
    run.add_argument("--config", type=Path, help="TOML settings file (env CHOREO_* wins)")
    run.add_argument(
        "--metrics-port",
        type=int,
        help="serve /metrics, /healthz and /readyz on this port (env CHOREO_METRICS_PORT)",
    )
    run.add_argument(
        "--metrics-host", help="address to bind them to (env CHOREO_METRICS_HOST; 127.0.0.1)"
    )
    run.set_defaults(handler=_run)


def find_service(target: str) -> Service:
    """The module's one ``Service`` (or the named attribute), with errors naming the module."""
    module, attribute = import_target(target, "service")
    module_name = module.__name__
    if attribute:
        found = getattr(module, attribute, None)
        if not isinstance(found, Service):
            raise TopologyError(f"{module_name}:{attribute} is not a choreo.Service")
        return found
    services = [value for value in vars(module).values() if isinstance(value, Service)]
    if len(services) != 1:
        raise TopologyError(
            f"{module_name} defines {len(services)} choreo.Service objects; "
            "name one with MODULE:ATTRIBUTE"
        )
    return services[0]


def summary(runner: ServiceRunner) -> str:
    """One screen that tells an operator what this process will do."""
    config = runner.config
    lines = [
        f"choreo service {runner.service.name!r}",
        f"  group      {runner.group_id} as instance {config.instance()}"
        f" ({'static' if config.static_membership else 'dynamic'} member,"
        f" session timeout {config.session_timeout_s:g}s)",
        f"  transport  {config.transport} -> {config.kafka.bootstrap_servers}"
        f" ({config.kafka.security_protocol})",
        f"  security   {security_line(config.kafka)}",
        f"  in flight  up to {config.max_in_flight} records;"
        f" commit every {config.commit_interval_s}s; shutdown grace {config.shutdown_grace_s}s",
        "  handlers",
    ]
    for handler in runner.service.handlers:
        if handler.event is None:
            takes, topic = "(records)", handler.topic
        else:
            takes = handler.event.event_type
            topic = runner.catalog.topic_of(takes).name
        kind = "batch" if handler.batching else ("async" if handler.is_async else "sync")
        lines.append(
            f"    {handler.name:<28} {takes:<36} {topic}  [{kind}, "
            f"{handler.retry.max_attempts} attempts]"
        )
    lines.append(f"  dead letters  choreo.dlq.{runner.service.name}.<topic>")
    return "\n".join(lines)


def security_line(kafka: KafkaConfig) -> str:
    """Who the service connects as and what it trusts; never a secret, only where secrets are."""
    parts: list[str] = [kafka.security_protocol]
    if kafka.sasl_mechanism == "OAUTHBEARER":
        who = kafka.oauth_client_id or "client options"
        parts.append(f"OAUTHBEARER as client {who!r} via {kafka.oauth_token_endpoint_url}")
    elif kafka.sasl_mechanism is not None:
        parts.append(f"{kafka.sasl_mechanism} as {kafka.sasl_username!r} (password set)")
    if "SSL" in kafka.security_protocol:
        parts.append(f"CA {kafka.ssl_cafile or 'system'}")
        if kafka.ssl_certfile is not None:
            parts.append(f"client certificate {kafka.ssl_certfile}")
        if not kafka.ssl_check_hostname:
            parts.append("hostname NOT checked")
    return ", ".join(parts)


async def serve(
    service: Service,
    config: ServiceConfig,
    *,
    metrics_port: int | None = None,
    metrics_host: str | None = None,
) -> None:
    """Start, then run until a signal; a second signal is not needed: grace is bounded.

    Tracing and metrics are on as the environment says (see
    ``choreo._observability``); spans still batched are flushed on the way out.
    """
    catalog = Catalog.load(config.schemas_dir)
    observability = Observability.from_env(
        service.name,
        config.group_id or service.name,
        metrics_port=metrics_port,
        metrics_host=metrics_host,
    )
    runner = ServiceRunner(
        service,
        config,
        make_transport(config.transport, config.kafka),
        catalog,
        instrument=observability.instrument,
    )
    # Before start: a SIGTERM while it creates topics, joins the group or seeds schedules
    # (an orchestrator stopping a pod that is still starting) then ends the process cleanly
    # once started, before it handles anything, instead of killing it mid-start. And before
    # the summary: a SIGTERM sent as soon as it appears (as a test does) killed the process
    # with the handlers not yet installed (exit -15; once in a CI run, 2026-12-05).
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(summary(runner), flush=True)
    try:
        await runner.start()
        observability.start(runner)
        print(observability.describe(), flush=True)
        print(gc_for_serving(config.tune_gc), flush=True)
        await runner.run(stop)
    finally:
        observability.close()


def _run(args: argparse.Namespace) -> int:
    install_logging(os.environ.get("CHOREO_LOG_FORMAT") or "text")
    service = find_service(args.module)
    config = load_config(args.config)
    redact_logs(Redactor(config.kafka.secrets()))
    asyncio.run(
        serve(
            service,
            config,
            metrics_port=args.metrics_port,
            metrics_host=args.metrics_host,
        )
    )
    return 0
