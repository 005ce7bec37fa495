"""``choreo dev up | down | status | logs NAME | smoke``: the local stack without Docker."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from choreo._dev import ComponentError, StackSettings, default_paths, local_stack
from choreo._errors import ChoreoError


def register(commands: argparse._SubParsersAction[Any]) -> None:
    dev = commands.add_parser(
        "dev", help="run the local stack (Kafka, PostgreSQL, Connect, registry, Jaeger)"
    )
    actions = dev.add_subparsers(dest="action", required=True)
    up = actions.add_parser("up", help="start every component, reusing those already up")
    up.set_defaults(handler=_up)
    down = actions.add_parser("down", help="stop the components this project started")
    down.add_argument("names", nargs="*", help="only these components (default: all)")
    down.set_defaults(handler=_down)
    status = actions.add_parser("status", help="a table of component, port, pid, healthy")
    status.set_defaults(handler=_status)
    for parser in (up, down, status):
        parser.add_argument(
            "--brokers",
            type=int,
            choices=(1, 3),
            default=StackSettings().kafka_brokers,
            help="Kafka nodes: 1, or a replicated 3-node cluster (default: $CHOREO_KAFKA_BROKERS "
            "or 1); give the same number to status and down",
        )
    logs = actions.add_parser("logs", help="print a component's log")
    shapes = (local_stack(StackSettings(kafka_brokers=n)) for n in (1, 3))
    logs.add_argument("name", choices=sorted({c.name for s in shapes for c in s.components}))
    logs.add_argument("-n", "--lines", type=int, default=50)
    logs.set_defaults(handler=_logs)
    actions.add_parser("smoke", help="a produce/consume round trip on the stack").set_defaults(
        handler=_smoke
    )


def _settings(args: argparse.Namespace) -> StackSettings:
    return StackSettings(kafka_brokers=args.brokers)


def _up(args: argparse.Namespace) -> int:
    try:
        local_stack(_settings(args)).up()
    except ComponentError as error:
        raise ChoreoError(str(error)) from None
    return _status(args)


def _down(args: argparse.Namespace) -> int:
    try:
        local_stack(_settings(args)).down(args.names)
    except ComponentError as error:
        raise ChoreoError(str(error)) from None
    return 0


def _status(args: argparse.Namespace) -> int:
    settings = _settings(args)
    rows = local_stack(settings).status()
    print(f"{'component':<10} {'port':>6} {'pid':>8}  healthy")
    for row in rows:
        pid = str(row.pid) if row.pid else "-"
        print(f"{row.name:<10} {row.port:>6} {pid:>8}  {'yes' if row.healthy else 'no'}")
    for row in rows:
        if row.stale:
            print(f"{row.name}: {row.stale}")
    print(
        f"\nkafka {settings.bootstrap_servers} (SASL_SSL {settings.secure_bootstrap_servers})"
        f"  postgres {settings.postgres_dsn}\n"
        f"connect {settings.connect_url}  registry {settings.schema_registry_url}\n"
        f"jaeger {settings.jaeger_query_url}"
    )
    return 0 if all(row.healthy for row in rows) else 1


def _logs(args: argparse.Namespace) -> int:
    log = default_paths().log(args.name)
    if not log.exists():
        print(f"choreo: no log for {args.name} at {log}", file=sys.stderr)
        return 1
    lines = log.read_text(errors="replace").splitlines()
    print("\n".join(lines[-args.lines :]))
    return 0


def _smoke(args: argparse.Namespace) -> int:
    from choreo._dev.smoke import round_trip

    return round_trip(StackSettings())
