"""``choreo ingress``: serve signed HTTP webhooks and publish each body as an event."""

from __future__ import annotations

import argparse
import asyncio
import os
from pathlib import Path
from typing import Any

from choreo._config import load_config
from choreo._ingress import parse_route, serve
from choreo._observability import install_logging
from choreo._security.redact import Redactor, redact_logs


def register(commands: argparse._SubParsersAction[Any]) -> None:
    ingress = commands.add_parser(
        "ingress",
        help="HTTP webhooks to events (HMAC-signed; secret in CHOREO_INGRESS__SECRET)",
        description="Validate each signed JSON body against its event's model and publish it; "
        "202 only once the broker acknowledged it. See choreo.ingress for the header format.",
    )
    ingress.add_argument(
        "--route",
        action="append",
        default=[],
        metavar="'METHOD /path=event.Type'",
        help="e.g. 'POST /orders=shop.orders.OrderReceived' (repeat; adds to [ingress.routes])",
    )
    ingress.add_argument("--config", type=Path, help="TOML settings file (env CHOREO_* wins)")
    ingress.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    ingress.add_argument("--port", type=int, help="port to listen on; 0 picks one (default 8080)")
    ingress.add_argument(
        "--metrics-port", type=int, help="/metrics and detailed /readyz on 127.0.0.1 (default off)"
    )
    ingress.add_argument("--models", help="module with the event models (default: codegen module)")
    ingress.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    install_logging(os.environ.get("CHOREO_LOG_FORMAT") or "text")
    config = load_config(args.config)
    ingress_secrets = (config.ingress.secret, config.ingress.replay_dsn)
    redact_logs(
        Redactor([*config.kafka.secrets(), *(s.get_secret_value() for s in ingress_secrets if s)])
    )
    flags = {
        "host": args.host,
        "port": args.port,
        "models": args.models,
        "metrics_port": args.metrics_port,
    }
    settings = config.ingress.model_copy(
        update={name: value for name, value in flags.items() if value is not None}
    )
    routes = dict(settings.routes)
    routes.update(parse_route(text) for text in args.route)
    asyncio.run(serve(config.model_copy(update={"ingress": settings}), routes))
    return 0
