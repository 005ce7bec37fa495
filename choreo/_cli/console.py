"""``choreo console``: serve the web console (sagas, dead letters, traces, topology)."""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path
from typing import Any

from choreo._config import load_config
from choreo._console import DEFAULT_JAEGER, DEFAULT_URL, ConsoleServer, sources
from choreo._security.redact import Redactor, redact_logs

TOKEN_ENV = "CHOREO_CONSOLE_TOKEN"
DEFAULT_PORT = int(DEFAULT_URL.rsplit(":", 1)[1])


def register(commands: argparse._SubParsersAction[Any]) -> None:
    console = commands.add_parser(
        "console",
        help="web console: sagas, dead letters, traces and topology (127.0.0.1:8070)",
        description="Read-only pages are open to whoever reaches the address; replay and "
        f"purge need a POST from the console's own pages, and the token when one is set "
        f"(--token or {TOKEN_ENV}).",
    )
    console.add_argument("--config", type=Path, help="TOML settings file (env CHOREO_* wins)")
    console.add_argument("--host", default="127.0.0.1", help="address (default 127.0.0.1)")
    console.add_argument("--port", type=int, default=DEFAULT_PORT, help="port; 0 picks one (8070)")
    console.add_argument("--token", help=f"needed for replay and purge (default ${TOKEN_ENV})")
    console.add_argument("--jaeger", default=DEFAULT_JAEGER, help="Jaeger query API base URL")
    console.add_argument(
        "--package", default="services", help="package whose services and sagas are drawn"
    )
    console.add_argument(
        "--saga", action="append", default=[], help="list only this saga (repeat; default all)"
    )
    console.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    config = load_config(args.config)
    token = args.token or os.environ.get(TOKEN_ENV) or None
    redact_logs(Redactor([*config.kafka.secrets(), *([token] if token else [])]))
    server = ConsoleServer(
        sources(config, token=token, package=args.package, jaeger=args.jaeger, sagas=args.saga),
        args.host,
        args.port,
    )
    print(f"choreo console on {server.url}", flush=True)
    server.run()
    return 0
