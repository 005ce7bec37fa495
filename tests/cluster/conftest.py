"""Tests on a 3-node cluster of their own: ``kafka`` here is that cluster, not the shared broker.

``run_service`` (from the runtime tests) therefore starts ``choreo run`` against the cluster.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from cluster_kit import Relaying
from confluent_kafka import Consumer, KafkaException, Producer
from confluent_kafka.admin import AdminClient
from runtime.conftest import run_service

from choreo.pytest_plugin import KafkaCluster

__all__ = ["run_service"]


@pytest.fixture(scope="session")
def kafka(kafka_cluster: KafkaCluster) -> str:
    """Every node's client listener, so clients reach the cluster with any node down.

    The group and transaction coordinators are loaded first (``_warm``): on a fresh
    cluster ``choreo run`` would meet COORDINATOR_LOAD_IN_PROGRESS describing its group.
    """
    _warm(kafka_cluster.bootstrap_servers)
    return kafka_cluster.bootstrap_servers


@pytest.fixture
def relaying(
    kafka: str,
    isolated_schemas: Path,
    tmp_path: Path,
    run_service: Callable[..., subprocess.Popen[str]],
) -> Relaying:
    """A seeded relay set-up on this test's fresh topics (see ``Relaying``)."""
    return Relaying(kafka, isolated_schemas, tmp_path, run_service)


def _warm(kafka: str) -> None:
    """Create ``__transaction_state`` and ``__consumer_offsets`` and wait for their leaders."""
    producer = Producer({"bootstrap.servers": kafka, "transactional.id": "warm-up"})
    producer.init_transactions(120)
    consumer = Consumer({"bootstrap.servers": kafka, "group.id": "warm-up"})
    admin = AdminClient({"bootstrap.servers": kafka})
    deadline = time.monotonic() + 120
    while True:
        try:
            admin.describe_consumer_groups(["warm-up"])["warm-up"].result(10)
            break
        except KafkaException:
            assert time.monotonic() < deadline, "the group coordinator never loaded"
            time.sleep(0.5)
    consumer.close()
