"""``choreo run MODULE``: run a service module's handlers against Kafka until SIGTERM/SIGINT."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
from pathlib import Path
from typing import Any

from choreo._cli.targets import import_target
from choreo._config import ServiceConfig, load_config
from choreo._errors import TopologyError
from choreo._observability import Observability, install_logging
from choreo._runtime.runner import ServiceRunner
from choreo._schemas import Catalog
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
        f"  group      {runner.group_id}",
        f"  transport  {config.transport} -> {config.kafka.bootstrap_servers}"
        f" ({config.kafka.security_protocol})",
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
    print(summary(runner), flush=True)
    try:
        await runner.start()
        observability.start(runner)
        print(observability.describe(), flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await runner.run(stop)
    finally:
        observability.close()


def _run(args: argparse.Namespace) -> int:
    install_logging(os.environ.get("CHOREO_LOG_FORMAT") or "text")
    service = find_service(args.module)
    asyncio.run(
        serve(
            service,
            load_config(args.config),
            metrics_port=args.metrics_port,
            metrics_host=args.metrics_host,
        )
    )
    return 0
