"""``choreo schemas check | push | codegen``: keep schemas parseable, compatible, registered
and models fresh."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from choreo._config import SchemaRegistryConfig
from choreo._schemas import check_command, codegen_command
from choreo._schemas.commands import push_command
from choreo._schemas.registry_client import RegistryClient


def register(commands: argparse._SubParsersAction[Any]) -> None:
    schemas = commands.add_parser("schemas", help="check schemas and generate event models")
    schemas.add_argument("--project", type=Path, default=Path.cwd(), help="project root")
    actions = schemas.add_subparsers(dest="action", required=True)
    check = actions.add_parser("check", help="parse, check compatibility and model freshness")
    check.add_argument(
        "--registry", metavar="URL", help="also check against this registry (Confluent API base)"
    )
    _timeout(check)
    check.set_defaults(handler=lambda args: check_command(args.project, _client(args)))
    push = actions.add_parser("push", help="register every schema version in a registry")
    push.add_argument(
        "--registry",
        metavar="URL",
        default=SchemaRegistryConfig().url,
        help="Confluent API base URL (default: the local stack's)",
    )
    _timeout(push)
    push.set_defaults(handler=lambda args: push_command(args.project, _need(_client(args))))
    actions.add_parser("codegen", help="write the pydantic models for every event").set_defaults(
        handler=lambda args: codegen_command(args.project)
    )


def _timeout(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--timeout",
        type=float,
        default=SchemaRegistryConfig().timeout_s,
        help="seconds one registry call may take",
    )


def _client(args: argparse.Namespace) -> RegistryClient | None:
    return None if args.registry is None else RegistryClient(args.registry, args.timeout)


def _need(client: RegistryClient | None) -> RegistryClient:
    assert client is not None  # push's --registry has a default
    return client
