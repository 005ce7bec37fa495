"""catalog.toml's replication and topic configs: parsed, refused when wrong, drift worded."""

from __future__ import annotations

from pathlib import Path

import pytest

from choreo._cli.topics import TopicState, drift
from choreo._errors import TopologyError
from choreo._schemas import Catalog
from choreo._transport.base import TopicConfig
from choreo._transport.shared import topic_settings
from services.events import OrderPlaced


def _orders(schemas: Path, *lines: str) -> str:
    """Add ``lines`` to the orders topic's table; returns the topic's name."""
    name = Catalog.load(schemas).topic_of(OrderPlaced.event_type).name
    catalog = schemas / "catalog.toml"
    header = f'[topics."{name}"]\n'
    added = "".join(f"{line}\n" for line in lines)
    catalog.write_text(catalog.read_text().replace(header, header + added))
    return name


def test_replication_and_configs_reach_the_topic_config(isolated_schemas: Path) -> None:
    name = _orders(
        isolated_schemas,
        "replication_factor = 3",
        "min_insync_replicas = 2",
        "retention_ms = 1000",
        'configs = { "cleanup.policy" = "compact,delete", "segment.ms" = 60000, '
        '"unclean.leader.election.enable" = false }',
    )
    config = Catalog.load(isolated_schemas).topics[name].topic_config()
    assert config == TopicConfig(
        name,
        3,
        replication_factor=3,
        configs=(
            ("cleanup.policy", "compact,delete"),
            ("min.insync.replicas", "2"),
            ("retention.ms", "1000"),
            ("segment.ms", "60000"),
            ("unclean.leader.election.enable", "false"),
        ),
    )
    assert topic_settings(config) == dict(config.configs)


def test_an_undeclared_replication_leaves_it_to_the_broker(isolated_schemas: Path) -> None:
    name = _orders(isolated_schemas)
    config = Catalog.load(isolated_schemas).topics[name].topic_config()
    assert config.replication_factor is None
    assert "min.insync.replicas" not in topic_settings(config)


@pytest.mark.parametrize(
    ("lines", "words"),
    [
        (["replication_factor = 0"], "'replication_factor' must be a positive integer"),
        (["min_insync_replicas = true"], "'min_insync_replicas' must be a positive integer"),
        (
            ["replication_factor = 2", "min_insync_replicas = 3"],
            "'min_insync_replicas' (3) exceeds 'replication_factor' (2)",
        ),
        (
            ['configs = { "retention.ms" = 5 }'],
            "set 'retention.ms' with the topic's 'retention_ms'",
        ),
        (
            ['configs = { "min.insync.replicas" = 2 }'],
            "set 'min.insync.replicas' with the topic's 'min_insync_replicas'",
        ),
        (['configs = { "segment.ms" = [1] }'], "config 'segment.ms' must be a string"),
        (['configs = "compact"'], "'configs' must be a table"),
    ],
)
def test_wrong_settings_name_the_topic_and_the_key(
    isolated_schemas: Path, lines: list[str], words: str
) -> None:
    name = _orders(isolated_schemas, *lines)
    with pytest.raises(TopologyError) as error:
        Catalog.load(isolated_schemas)
    assert f"topic '{name}'" in str(error.value)
    assert words in str(error.value)


def test_drift_names_each_difference_and_nothing_else(isolated_schemas: Path) -> None:
    name = _orders(
        isolated_schemas,
        "replication_factor = 3",
        "min_insync_replicas = 2",
        'configs = { "cleanup.policy" = "compact" }',
    )
    spec = Catalog.load(isolated_schemas).topics[name]
    declared = {"min.insync.replicas": "2", "cleanup.policy": "compact", "segment.ms": "1"}
    assert drift(spec, TopicState(3, 3, declared)) == []
    assert drift(spec, TopicState(6, 1, {"min.insync.replicas": "1"})) == [
        "partitions: 6 on the cluster, 3 declared",
        "replication_factor: 1 on the cluster, 3 declared",
        "cleanup.policy: None on the cluster, compact declared",
        "min.insync.replicas: 1 on the cluster, 2 declared",
    ]
