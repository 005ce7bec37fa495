"""Two of three brokers down: acks=all writes are refused, the service waits, then resumes."""

from __future__ import annotations

import socket
import time
import urllib.error
import urllib.request
from collections import Counter

import pytest
from cluster_kit import OrderFeed, Relaying, wait_fully_replicated, wait_until

from choreo.pytest_plugin import KafkaCluster

pytestmark = pytest.mark.stack
OUTAGE_S = 15


def _readyz(port: int) -> str:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5) as reply:
            return f"{reply.status} {reply.read().decode().strip()}"
    except urllib.error.HTTPError as error:
        return f"{error.code} {error.read().decode().strip()}"


@pytest.mark.timeout(600)  # three JVMs restart in turn on a shared 2-core runner
def test_losing_the_quorum_refuses_writes_and_the_service_resumes_when_a_broker_returns(
    kafka_cluster: KafkaCluster, kafka: str, relaying: Relaying
) -> None:
    catalog, seed, effects = relaying.catalog, relaying.seed, relaying.effects
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        metrics_port = sock.getsockname()[1]
    service = relaying.start_once(CHOREO_METRICS_PORT=str(metrics_port))
    before = OrderFeed(kafka, catalog, seed, rate=200, limit=200)
    before.start()
    assert before.finish() == 200 and not before.errors
    before.settle()  # an order its producer lost is sent again (see OrderFeed.settle)
    wait_until(lambda: len(effects()) >= 200, 90, "the first 200 effects")

    down = ["kafka-1", "kafka-2"]
    for node in down:
        kafka_cluster.kill(node)
    refused = OrderFeed(kafka, catalog, seed, rate=200, limit=50, first=200, timeout_ms=10_000)
    refused.start()
    refused.finish()  # each record fails within its timeout: acks=all, one replica left
    time.sleep(OUTAGE_S)
    during = _readyz(metrics_port)
    assert service.poll() is None, "the service exited while the quorum was lost"
    assert len(effects()) == 200
    assert sum(refused.errors.values()) == 50 and not refused.partition_of, refused.errors

    kafka_cluster.start(down[0])
    after = OrderFeed(kafka, catalog, seed, rate=200, limit=50, first=200)  # sent again
    after.start()
    assert after.finish() == 50 and not after.errors
    after.settle()
    wait_until(lambda: len(effects()) >= 250, 120, "the resent 50 effects")
    counts = Counter(order for order, _ in effects())
    assert set(counts) == {f"o-{i}" for i in range(250)} and set(counts.values()) == {1}
    assert service.poll() is None, "the service exited"
    kafka_cluster.start()
    wait_fully_replicated(kafka, [before.topic])
    print(f"quorum lost: producer errors {dict(refused.errors)}; /readyz during it: {during}")
