"""The order saga over SASL_SSL: each service and the tracker as its own SCRAM principal, with
exactly the ACLs `choreo acl apply` derived, on both transports."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import pytest
from builders import placed
from conftest import Secured

import choreo
from choreo._saga.store import changelog_topic, read_changelog

pytestmark = pytest.mark.stack

TARGETS = (
    "secure_services:stock",
    "secure_services:payments",
    "secure_services:fulfilment",
    "saga_defs:order_saga",
)


def _status(kafka: str, saga: str, order_id: str) -> str | None:
    states = read_changelog({"bootstrap.servers": kafka}, changelog_topic(saga))
    found = [s for by_id in states.values() for i, s in by_id.items() if i == order_id]
    return found[0].status.value if found else None


def publish_placed(kafka: str, schemas: Path, order_id: str) -> None:
    """An OrderPlaced for ``order_id`` (also its saga id), through the open PLAINTEXT listener."""
    config = choreo.ServiceConfig(
        kafka=choreo.KafkaConfig(bootstrap_servers=kafka), schemas_dir=schemas
    )

    async def send() -> None:
        async with choreo.Publisher("web", config) as publisher:
            await publisher.publish(placed(order_id), correlation_id=order_id)

    asyncio.run(send())


def test_saga_completes_with_least_privilege_acls(secured: Secured, kafka: str) -> None:
    users = {name: secured.user(name) for name in ("stock", "payments", "fulfilment")}
    tracker = secured.user(f"choreo-saga-{secured.saga}")

    applied = secured.admin("acl", "apply", *TARGETS)
    assert applied.returncode == 0, applied.stderr
    stock = users["stock"]
    assert f"+ User:{stock}" in applied.stdout
    assert f"WRITE topic choreo.dlq.{stock}.shop.orders." in applied.stdout
    assert f"WRITE transactional_id prefix choreo.choreo-saga-{secured.saga}." in applied.stdout
    planned = secured.admin("acl", "plan", *TARGETS)
    assert "0 to create, 0 to delete" in planned.stdout, planned.stdout + planned.stderr

    secured.start("run", TARGETS[0], env={**secured.as_user(stock), "CHOREO_TRANSPORT": "aiokafka"})
    secured.start("run", TARGETS[1], env=secured.as_user(users["payments"]))
    secured.start("run", TARGETS[2], env=secured.as_user(users["fulfilment"]))
    secured.start("saga", "run", TARGETS[3], "--instance", "a", env=secured.as_user(tracker))

    order_id = f"sec-{uuid.uuid4().hex[:10]}"
    publish_placed(kafka, secured.schemas, order_id)
    secured.wait(
        lambda: _status(kafka, secured.saga, order_id) == "completed",
        f"saga {order_id} to complete",
        timeout_s=90,
    )
    for process, log in secured.processes:
        text = log.read_text()
        assert process.poll() is None, text
        assert not any(password in text for password in secured.passwords.values())
    assert f"SASL_SSL, SCRAM-SHA-512 as '{stock}' (password set)" in secured.output(
        secured.processes[0][0]
    )
