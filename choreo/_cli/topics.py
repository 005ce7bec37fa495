"""``choreo topics check``: does the cluster hold the topics ``catalog.toml`` declares?

Choreo creates a missing topic with the catalog's settings but never alters an
existing one (a partition count cannot shrink, and changing replication moves
data), so a topic made by hand or before a catalog edit can drift from it.
This command lists every difference: partitions, replication factor and each
topic config the catalog sets (``retention_ms``, ``min_insync_replicas``,
``configs``). It exits 1 when a topic drifted, 0 when all match (missing
topics are listed: the first service that uses one creates it).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, ConfigResource  # type: ignore[attr-defined]

from choreo._config import load_config
from choreo._errors import TransportError
from choreo._schemas import Catalog
from choreo._schemas.catalog import TopicSpec
from choreo._transport.confluent import librdkafka_settings

ADMIN_TIMEOUT_S = 15.0


@dataclass(frozen=True)
class TopicState:
    """A topic as the cluster describes it."""

    partitions: int
    replication_factor: int
    """The fewest replicas any of its partitions has."""
    configs: dict[str, str]


def register(commands: argparse._SubParsersAction[Any]) -> None:
    topics = commands.add_parser("topics", help="compare the cluster's topics with catalog.toml")
    topics.add_argument("--config", type=Path, help="TOML settings file (env CHOREO_* wins)")
    actions = topics.add_subparsers(dest="action", required=True)
    check = actions.add_parser("check", help="list partitions, replication and config drift")
    check.set_defaults(handler=_check)


def drift(spec: TopicSpec, state: TopicState) -> list[str]:
    """What differs between the catalog's ``spec`` and the cluster's ``state``, in words."""
    found = []
    if state.partitions != spec.partitions:
        found.append(f"partitions: {state.partitions} on the cluster, {spec.partitions} declared")
    wanted_rf = spec.replication_factor
    if wanted_rf is not None and state.replication_factor != wanted_rf:
        found.append(
            f"replication_factor: {state.replication_factor} on the cluster, {wanted_rf} declared"
        )
    for name, value in sorted(spec.broker_configs().items()):
        actual = state.configs.get(name)
        if actual != value:
            found.append(f"{name}: {actual} on the cluster, {value} declared")
    return found


def _check(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    catalog = Catalog.load(config.schemas_dir)
    admin = AdminClient(librdkafka_settings(config.kafka))
    states = _describe(admin, config.kafka.bootstrap_servers, list(catalog.topics))
    drifted = 0
    for name, spec in sorted(catalog.topics.items()):
        state = states.get(name)
        if state is None:
            print(f"{name}: missing (the first service that uses it creates it)")
            continue
        problems = drift(spec, state)
        drifted += bool(problems)
        print(f"{name}: {'; '.join(problems) if problems else 'as declared'}")
    if drifted:
        print(f"{drifted} topic(s) differ from catalog.toml; choreo never alters an existing topic")
    return 1 if drifted else 0


def _describe(admin: AdminClient, servers: str, names: list[str]) -> dict[str, TopicState]:
    try:
        metadata = admin.list_topics(timeout=ADMIN_TIMEOUT_S)
        present = [n for n in names if n in metadata.topics]
        resources = [ConfigResource(ConfigResource.Type.TOPIC, n) for n in present]
        described = admin.describe_configs(resources) if resources else {}
        configs = {
            resource.name: {entry.name: entry.value for entry in future.result().values()}
            for resource, future in described.items()
        }
    except KafkaException as error:
        raise TransportError(f"cannot describe topics on {servers}: {error.args[0]}") from None
    return {
        name: TopicState(
            partitions=len(partitions := metadata.topics[name].partitions),
            replication_factor=min(len(p.replicas) for p in partitions.values()),
            configs=configs[name],
        )
        for name in present
    }
