"""``choreo acl plan | apply TARGET...``: least-privilege ACLs for services and saga trackers.

A target is a module (every ``choreo.Service`` and ``Saga`` in it) or
``module:attribute`` (one service, or a saga and its versions). Run it with an
admin's settings (``--config`` / ``CHOREO_KAFKA__*``): ``plan`` prints the
difference against the cluster, ``apply`` creates the topics the targets need
(catalog, retry, dead-letter, saga changelog) and then makes the principals'
ACLs exactly the planned ones.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from pathlib import Path
from typing import Any

from choreo._cli.targets import import_target
from choreo._config import ServiceConfig, load_config
from choreo._errors import ConfigError, TopologyError, TransportError
from choreo._saga.definition import Saga
from choreo._schemas import Catalog
from choreo._security.acl import AclDiff, Grant, diff, service_grant, tracker_grant
from choreo._security.acl_admin import AclAdmin
from choreo._service import Service
from choreo._transport.confluent import ConfluentTransport

ENFORCED_WAIT_S = 30.0
"""How long ``apply`` waits for the broker to describe what it created and deleted."""


def register(commands: argparse._SubParsersAction[Any]) -> None:
    acl = commands.add_parser("acl", help="least-privilege ACLs for services and saga trackers")
    acl.add_argument("--config", type=Path, help="TOML settings file (env CHOREO_* wins)")
    actions = acl.add_subparsers(dest="action", required=True)
    for name, handler, text in (
        ("plan", _plan, "show the ACLs to create and delete, against the cluster"),
        ("apply", _apply, "create the targets' topics and make the principals' ACLs the plan's"),
    ):
        action = actions.add_parser(name, help=text)
        action.add_argument("targets", nargs="+", help="module or module:attribute")
        action.add_argument(
            "--principal",
            action="append",
            default=[],
            metavar="OWNER=PRINCIPAL",
            help="e.g. orders=User:svc-orders or choreo-saga-order=User:tracker "
            "(default: User:<service name>, User:choreo-saga-<saga>)",
        )
        action.add_argument(
            "--replay",
            action="store_true",
            help="also let each service's (and tracker's) principal replay its own DLQs",
        )
        action.set_defaults(handler=handler)


def grants(
    targets: list[str], config: ServiceConfig, principals: dict[str, str], replay: bool = False
) -> list[Grant]:
    """One grant per service and per saga (all versions of one saga share a tracker)."""
    catalog = Catalog.load(config.schemas_dir)
    services: list[Service] = []
    sagas: dict[str, list[Saga]] = {}
    for target in targets:
        module, attribute = import_target(target, "service or saga")
        values = [getattr(module, attribute, None)] if attribute else list(vars(module).values())
        found = [v for v in values if isinstance(v, Service | Saga)]
        if attribute and not found and isinstance(values[0], list | tuple):
            found = [v for v in values[0] if isinstance(v, Saga)]
        if not found:
            raise TopologyError(f"{target} holds no choreo.Service and no Saga")
        services += [v for v in found if isinstance(v, Service) and v not in services]
        for saga in (v for v in found if isinstance(v, Saga)):
            versions = sagas.setdefault(saga.name, [])
            if saga not in versions:
                versions.append(saga)
    made = [
        service_grant(s, config, catalog, principals.get(s.name), replay=replay) for s in services
    ] + [
        tracker_grant(versions, catalog, principals.get(f"choreo-saga-{name}"), replay=replay)
        for name, versions in sagas.items()
    ]
    unknown = (
        set(principals)
        - {g.owner.removeprefix("saga ") for g in made}
        - {f"choreo-saga-{name}" for name in sagas}
    )
    if unknown:
        raise ConfigError(f"--principal for {', '.join(sorted(unknown))}: no such service or saga")
    return made


def _parse_principals(pairs: list[str]) -> dict[str, str]:
    principals: dict[str, str] = {}
    for pair in pairs:
        owner, sep, principal = pair.partition("=")
        if not sep or ":" not in principal:
            raise ConfigError(f"--principal {pair!r}: use OWNER=Type:name, e.g. orders=User:orders")
        principals[owner] = principal
    return principals


def _planned(args: argparse.Namespace) -> tuple[ServiceConfig, list[Grant], AclDiff, list[str]]:
    config = load_config(args.config)
    made = grants(args.targets, config, _parse_principals(args.principal), args.replay)
    admin = AclAdmin(config.kafka)
    existing, unmanaged = admin.describe({g.principal for g in made})
    return config, made, diff((a for g in made for a in g.acls), existing), unmanaged


def _print(changes: AclDiff, unmanaged: list[str], servers: str) -> None:
    print(f"ACLs on {servers} (+ create, - delete, unmarked: already there)")
    for line in changes.lines():
        print(f"  {line}")
    for rule in unmanaged:
        print(f"  ? {rule} (not choreo's: left alone)")
    print(
        f"{len(changes.add)} to create, {len(changes.remove)} to delete, "
        f"{len(changes.keep)} already there"
    )


def _plan(args: argparse.Namespace) -> int:
    config, _, changes, unmanaged = _planned(args)
    _print(changes, unmanaged, config.kafka.bootstrap_servers)
    return 0


def _apply(args: argparse.Namespace) -> int:
    config, made, changes, unmanaged = _planned(args)
    topics = [topic for grant in made for topic in grant.topics]
    asyncio.run(ConfluentTransport(config.kafka).ensure_topics(topics))
    admin = AclAdmin(config.kafka)
    admin.delete(changes.remove)
    admin.create(changes.add)
    _wait_enforced(admin, made, config.kafka.bootstrap_servers)
    _print(changes, unmanaged, config.kafka.bootstrap_servers)
    print(f"applied; {len({t.name for t in topics})} topics exist")
    return 0


def _wait_enforced(admin: AclAdmin, made: list[Grant], servers: str) -> None:
    """Return once the broker describes exactly the planned ACLs.

    The controller commits a change before every broker's authorizer has loaded it, so a
    service started right after ``apply`` could still be denied (and stop, as it must on a
    denial). The broker's describe answers from that same authorizer.
    """
    deadline = time.monotonic() + ENFORCED_WAIT_S
    while True:
        existing, _ = admin.describe({g.principal for g in made})
        left = diff((a for g in made for a in g.acls), existing)
        if not (left.add or left.remove):
            return
        if time.monotonic() > deadline:
            raise TransportError(
                f"{servers} still does not enforce {len(left.add)} created and "
                f"{len(left.remove)} deleted ACLs {ENFORCED_WAIT_S:g}s after apply"
            )
        time.sleep(0.2)
