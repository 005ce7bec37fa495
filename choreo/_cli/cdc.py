"""``choreo cdc apply | status | pause | resume | delete | outbox-ddl | outbox-init``.

Connectors are declared in the service module (``CdcSource``, ``OutboxRelay``
objects; see ``choreo.cdc``); every command takes that module, like
``choreo run``, and acts on each connector it declares (or on the one named
with ``MODULE:ATTRIBUTE``).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Callable
from typing import Any

from choreo._cdc.connect import DEFAULT_URL, ConnectClient, ConnectorState
from choreo._cdc.outbox_table import DEFAULT_TABLE, outbox_ddl
from choreo._cdc.relay import OutboxRelay
from choreo._cdc.slots import connect as connect_db
from choreo._cdc.slots import drop_slot
from choreo._cdc.source import PostgresConnector
from choreo._cli.targets import import_target
from choreo._config import load_config
from choreo._errors import ConfigError, TopologyError
from choreo._schemas import Catalog
from choreo._transport.confluent import ConfluentTransport


def register(commands: argparse._SubParsersAction[Any]) -> None:
    cdc = commands.add_parser("cdc", help="manage Debezium connectors and the outbox table")
    actions = cdc.add_subparsers(dest="action", required=True)
    for name, handler, summary in (
        ("apply", _apply, "create or update the module's connectors (idempotent)"),
        ("status", _status, "connector/task states and errors (exit 1 unless all run)"),
        ("pause", _pause, "pause the module's connectors"),
        ("resume", _resume, "resume the module's connectors"),
        ("delete", _delete, "delete the module's connectors"),
    ):
        action = actions.add_parser(name, help=summary)
        action.add_argument("module", help="dotted module path, optionally module:attribute")
        action.add_argument(
            "--connect",
            default=os.environ.get("CHOREO_CONNECT_URL", DEFAULT_URL),
            help="Kafka Connect REST URL (env CHOREO_CONNECT_URL)",
        )
        action.set_defaults(handler=handler)
        if name == "apply":
            action.add_argument(
                "--wait", type=float, metavar="SECONDS", help="then wait until they run"
            )
        if name == "delete":
            action.add_argument(
                "--drop-slot",
                action="store_true",
                help="also drop the replication slots and publications (needs psycopg)",
            )
    ddl = actions.add_parser("outbox-ddl", help="print the outbox table's CREATE statements")
    ddl.add_argument("--table", default=DEFAULT_TABLE, help="schema.table")
    ddl.set_defaults(handler=_outbox_ddl)
    init = actions.add_parser("outbox-init", help="create the outbox table (idempotent)")
    init.add_argument(
        "module", nargs="?", help="module whose OutboxRelay names the database and table"
    )
    init.add_argument("--dsn", help="postgresql:// URL, instead of a module")
    init.add_argument("--table", default=DEFAULT_TABLE, help="schema.table (with --dsn)")
    init.set_defaults(handler=_outbox_init)


def find_connectors(target: str) -> list[PostgresConnector]:
    """The connectors a module declares (or the named attribute), in declaration order."""
    module, attribute = import_target(target, "connector")
    if attribute:
        found = getattr(module, attribute, None)
        if not isinstance(found, PostgresConnector):
            raise TopologyError(f"{target} is not a CdcSource or OutboxRelay")
        return [found]
    connectors = [v for v in vars(module).values() if isinstance(v, PostgresConnector)]
    if not connectors:
        raise TopologyError(f"{module.__name__} declares no CdcSource or OutboxRelay")
    return connectors


def _apply(args: argparse.Namespace) -> int:
    client = ConnectClient(args.connect)
    connectors = find_connectors(args.module)
    if any(isinstance(connector, OutboxRelay) for connector in connectors):
        print(_ensure_catalog_topics(), file=sys.stderr)
    for connector in connectors:
        print(f"{connector.name}: {client.apply(connector.name, connector.connector_config())}")
    if args.wait:
        for connector in connectors:
            client.wait_running(connector.name, args.wait)
            print(f"{connector.name}: running")
    return 0


def _ensure_catalog_topics() -> str:
    """A relay's first row for a topic nobody created yet would have Connect create it with
    the broker's default partition count (often 1), unlike the catalog's: a saga tracker then
    refuses its inputs' differing counts, and keys land on other partitions than a direct
    produce's. So the catalog's topics are made first, as ``choreo run`` makes them."""
    config = load_config()
    if not (config.schemas_dir / "catalog.toml").is_file():
        return (
            f"topics: no catalog.toml in {config.schemas_dir} (CHOREO_SCHEMAS_DIR): a topic "
            "the relay writes first is created with the broker's default partition count"
        )
    catalog = Catalog.load(config.schemas_dir)
    transport = ConfluentTransport(config.kafka)
    asyncio.run(transport.ensure_topics([s.topic_config() for s in catalog.topics.values()]))
    return f"topics: the catalog's {len(catalog.topics)} topic(s) exist, as catalog.toml sets them"


def _status(args: argparse.Namespace) -> int:
    client = ConnectClient(args.connect)
    healthy = True
    for connector in find_connectors(args.module):
        state = client.status(connector.name)
        print(describe(connector.name, state))
        healthy = healthy and state is not None and state.running
    return 0 if healthy else 1


def describe(name: str, state: ConnectorState | None) -> str:
    """One line per connector, plus one per failure."""
    if state is None:
        return f"{name}: absent (run choreo cdc apply)"
    tasks = ", ".join(f"task {t.id} {t.state}" for t in state.tasks) or "no tasks"
    line = f"{name}: {state.state} ({tasks})"
    error = state.error
    return f"{line}\n  error: {error}" if error else line


def _pause(args: argparse.Namespace) -> int:
    return _each(args, ConnectClient.pause, "pausing")


def _resume(args: argparse.Namespace) -> int:
    return _each(args, ConnectClient.resume, "resuming")


def _each(
    args: argparse.Namespace, action: Callable[[ConnectClient, str], object], verb: str
) -> int:
    """Apply a one-call Connect action to every connector of the module."""
    client = ConnectClient(args.connect)
    for connector in find_connectors(args.module):
        action(client, connector.name)
        print(f"{connector.name}: {verb}")
    return 0


def _delete(args: argparse.Namespace) -> int:
    client = ConnectClient(args.connect)
    for connector in find_connectors(args.module):
        existed = client.delete(connector.name, missing_ok=True)
        print(f"{connector.name}: {'deleted' if existed else 'absent'}")
        if args.drop_slot:
            dropped = drop_slot(connector)
            slot = connector.slot_name
            print(f"{connector.name}: slot {slot} {'dropped' if dropped else 'absent'}")
    return 0


def _outbox_ddl(args: argparse.Namespace) -> int:
    print(outbox_ddl(args.table), end="")
    return 0


def _outbox_init(args: argparse.Namespace) -> int:
    if (args.module is None) == (args.dsn is None):
        raise ConfigError("outbox-init takes a module with an OutboxRelay, or --dsn")
    if args.dsn is not None:
        targets = [(args.dsn, args.table)]
    else:
        relays = [c for c in find_connectors(args.module) if isinstance(c, OutboxRelay)]
        if not relays:
            raise TopologyError(f"{args.module} declares no OutboxRelay")
        targets = [(relay.database.dsn, relay.table) for relay in relays]
    for dsn, table in targets:
        with connect_db(dsn) as conn:
            conn.execute(outbox_ddl(table))
        print(f"{table}: ready")
    return 0
