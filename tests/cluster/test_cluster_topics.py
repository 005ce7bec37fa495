"""catalog.toml's replication and topic configs on a 3-node cluster, and drift reported."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic

from choreo import KafkaConfig
from choreo._schemas import Catalog
from choreo._transport.base import TopicConfig
from choreo._transport.confluent import ConfluentTransport
from services.events import OrderPlaced, StockReservationFailed

pytestmark = pytest.mark.stack
ROOT = Path(__file__).resolve().parents[2]


def _declare(schemas: Path, topic: str, *lines: str) -> None:
    """Add ``lines`` to ``topic``'s table in the isolated catalog."""
    catalog = schemas / "catalog.toml"
    header = f'[topics."{topic}"]\n'
    added = "".join(f"{line}\n" for line in lines)
    catalog.write_text(catalog.read_text().replace(header, header + added))


def _described(kafka: str, topic: str) -> tuple[int, dict[str, str]]:
    """(fewest replicas of any partition, topic configs) as the cluster says."""
    admin = AdminClient({"bootstrap.servers": kafka})
    partitions = admin.list_topics(topic, timeout=10).topics[topic].partitions
    resource = ConfigResource(ConfigResource.Type.TOPIC, topic)
    entries = admin.describe_configs([resource])[resource].result(10)
    return min(len(p.replicas) for p in partitions.values()), {
        name: entry.value for name, entry in entries.items()
    }


def test_catalog_settings_and_replicated_defaults_are_applied_and_drift_is_reported(
    kafka: str, isolated_schemas: Path
) -> None:
    orders = Catalog.load(isolated_schemas).topic_of(OrderPlaced.event_type).name
    outputs = Catalog.load(isolated_schemas).topic_of(StockReservationFailed.event_type).name
    _declare(
        isolated_schemas,
        orders,
        "replication_factor = 3",
        "min_insync_replicas = 3",
        'configs = { "segment.ms" = 3600000, "message.timestamp.type" = "LogAppendTime" }',
    )
    catalog = Catalog.load(isolated_schemas)
    ledger = f"{orders}.ledger"  # as choreo makes its own topics: no replication asked for
    transport = ConfluentTransport(KafkaConfig(bootstrap_servers=kafka))
    asyncio.run(
        transport.ensure_topics([catalog.topics[orders].topic_config(), TopicConfig(ledger)])
    )

    replicas, configs = _described(kafka, orders)
    assert replicas == 3
    assert configs["min.insync.replicas"] == "3"
    assert configs["segment.ms"] == "3600000"
    assert configs["message.timestamp.type"] == "LogAppendTime"
    assert _described(kafka, ledger)[0] == 3, "choreo's own topics take the cluster's default"
    assert _described(kafka, ledger)[1]["min.insync.replicas"] == "2"

    # Made by hand with one replica: the catalog's other topics are still missing.
    admin = AdminClient({"bootstrap.servers": kafka})
    admin.create_topics([NewTopic(outputs, 1, 1)])[outputs].result(30)
    _declare(isolated_schemas, outputs, "replication_factor = 3")
    check = subprocess.run(
        [sys.executable, "-m", "choreo._cli.main", "topics", "check"],
        env={
            **os.environ,
            "CHOREO_BOOTSTRAP_SERVERS": kafka,
            "CHOREO_SCHEMAS_DIR": str(isolated_schemas),
        },
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert check.returncode == 1, check.stdout + check.stderr
    lines = dict(line.split(": ", 1) for line in check.stdout.splitlines() if ": " in line)
    assert lines[orders] == "as declared"
    assert lines[outputs] == (
        "partitions: 1 on the cluster, 3 declared; replication_factor: 1 on the cluster, 3 declared"
    )
    assert "1 topic(s) differ" in check.stdout
