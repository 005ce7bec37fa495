"""A static member (``CHOREO_INSTANCE_ID``) while the broker coordinating its group is SIGKILLed.

With the shortest session timeout (6 s) librdkafka times the static member's session out
before the group moves to another broker, rejoins under a new member id, and a request still
carrying the old one may come back ``FENCED_INSTANCE_ID``: a fatal consumer error, the one a
real twin (another process with the same instance id) causes (librdkafka #3437). The service
must take it for what it is, replace its consumer and read on from its commits, not stop as
if a twin had started.

Whether the kill ends in that fence is chance, so the second test makes one on demand: it
notes the session timeout that precedes a self-fence and lets a twin fence the member, which
must lose its partition (nothing committed, the transaction aborted), join again and read on
from the commit; a fence with no timeout before it still stops the member as a twin's.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from pathlib import Path

import pytest
from cluster_kit import (
    RELAY,
    OrderFeed,
    Relaying,
    coordinator,
    wait_fully_replicated,
    wait_until,
)
from confluent_kafka import Consumer

from choreo import KafkaConfig
from choreo._errors import TransportError
from choreo._transport.base import Membership, TopicConfig, TopicPartition, TransactionalProducer
from choreo._transport.confluent import ConfluentConsumer, ConfluentTransport
from choreo.pytest_plugin import KafkaCluster

pytestmark = pytest.mark.stack
ORDERS = 1000
"""25 s of orders at 40 a second: the kill comes after ~4 s, the session timeout 6 s later."""


@pytest.mark.timeout(300)
def test_a_static_member_goes_on_through_the_kill_of_its_group_coordinator(
    kafka_cluster: KafkaCluster, kafka: str, relaying: Relaying, tmp_path: Path
) -> None:
    group = f"{RELAY}-{uuid.uuid4().hex[:6]}"  # its own coordinator, of the 3, each run
    relay = relaying.start_once(
        CHOREO_GROUP_ID=group,
        CHOREO_INSTANCE_ID=f"{group}-0",
        CHOREO_STATIC_MEMBERSHIP="true",
        CHOREO_SESSION_TIMEOUT_S="6",
    )
    log = tmp_path / "tests_cluster_relay_once-0.log"
    feed = OrderFeed(kafka, relaying.catalog, relaying.seed, limit=ORDERS)
    feed.start()
    wait_until(
        lambda: relay.poll() is not None or len(relaying.effects()) >= 150, 90, "150 effects"
    )
    node = coordinator(kafka, group)
    kafka_cluster.kill(f"kafka-{node}")
    killed_at = time.monotonic()

    sent = feed.finish()
    assert sent == ORDERS and not feed.errors, feed.errors
    wanted = {f"o-{i}" for i in feed.settle()}

    def unhandled() -> list[str]:
        return sorted(wanted - {order for order, _ in relaying.effects()})

    wait_until(lambda: relay.poll() is not None or not unhandled(), 90, "every effect", unhandled)
    caught_up_s = time.monotonic() - killed_at
    kafka_cluster.start()
    wait_fully_replicated(kafka, [feed.topic, relaying.outputs])

    text = log.read_text()
    assert relay.poll() is None, f"the relay exited; its log ends:\n{text[-5000:]}"
    assert not unhandled(), f"orders without an effect: {unhandled()}"
    print(
        f"{sent} orders; coordinator kafka-{node} killed; every order handled {caught_up_s:.0f}s "
        f"after the kill; the session timed out {text.count('SESSTMOUT')}x, the relay rejoined "
        f"after fencing itself {text.count('librdkafka #3437')}x"
    )


class _Revocations:
    """On each revocation, tries to commit past what was committed, plainly and in a
    transaction, and keeps what came of it."""

    def __init__(self, consumer: ConfluentConsumer, producer: TransactionalProducer) -> None:
        self.consumer, self.producer = consumer, producer
        self.outcomes: list[str] = []

    async def on_assigned(self, partitions: list[TopicPartition]) -> None:
        pass

    async def on_revoked(self, partitions: list[TopicPartition]) -> None:
        offsets = dict.fromkeys(partitions, 15)
        for attempt in (
            self.consumer.commit(offsets),
            self.producer.commit(offsets, self.consumer),
        ):
            try:
                await attempt
                self.outcomes.append("committed")
            except TransportError as refused:
                self.outcomes.append(f"{type(refused).__name__}: {refused}")


def _twin(kafka: str, group: str, topic: str) -> Consumer:
    """Another process's member with the same ``group.instance.id``: it fences ours."""
    twin = Consumer(
        {
            "bootstrap.servers": kafka,
            "group.id": group,
            "group.instance.id": f"{group}-0",
            "enable.auto.commit": False,
            "partition.assignment.strategy": "cooperative-sticky",
            "session.timeout.ms": 6000,
        }
    )
    twin.subscribe([topic])
    return twin


async def _read(consumer: ConfluentConsumer, count: int, twin: Consumer | None = None) -> list[int]:
    """Offsets of the next ``count`` records; the twin (if any) is polled meanwhile."""
    offsets: list[int] = []
    while len(offsets) < count:
        offsets += [record.offset for record in await consumer.poll(100, 0.2)]
        if twin is not None:
            twin.poll(0)
    return offsets


async def _fenced_twice(kafka: str) -> list[str]:
    topic = group = f"static-fence-{uuid.uuid4().hex[:6]}"
    transport = ConfluentTransport(KafkaConfig(bootstrap_servers=kafka))
    await transport.ensure_topics([TopicConfig(topic, 1)])
    producer = transport.producer("static-fence")
    for i in range(20):
        await (await producer.send(topic, b"k", str(i).encode(), []))
    await producer.close()
    transactional = transport.transactional_producer("static-fence", f"{group}-tx")
    await transactional.begin()
    consumer = transport.consumer(group, "static-fence", Membership(6.0, f"{group}-0"))
    revocations = _Revocations(consumer, transactional)
    await consumer.subscribe([topic], revocations)
    assert await _read(consumer, 20) == list(range(20))
    await consumer.commit({TopicPartition(topic, 0): 10})

    # A self-fence cannot be had on demand: note the session timeout that would precede it,
    # and let a twin fence us. Ours must lose its partition, join again (fencing the twin)
    # and read on from the commit.
    consumer._session.log(logging.WARNING, "%s [%s] %s", "SESSTMOUT", "test", "timed out")
    first = _twin(kafka, group, topic)
    assert await _read(consumer, 10, first) == list(range(10, 20)), "not read from the commit"
    first.close()

    # No session timeout before this fence: a real twin, ours stops with the twin message.
    second = _twin(kafka, group, topic)
    with pytest.raises(TransportError, match="same CHOREO_INSTANCE_ID") as stopped:
        await _read(consumer, 1000, second)
    outcomes = [*revocations.outcomes, str(stopped.value)]
    second.close()
    with contextlib.suppress(TransportError):
        await consumer.close()
    await transactional.close()
    return outcomes


def test_a_fence_right_after_its_own_session_timeout_rejoins_one_out_of_the_blue_stops(
    kafka: str, caplog: pytest.LogCaptureFixture
) -> None:
    *revoked, stopped = asyncio.run(asyncio.wait_for(_fenced_twice(kafka), 90))
    plain, transaction = revoked[:2]
    assert "lost, not committed" in plain, revoked
    assert transaction.startswith("TransactionAborted") and "lost" in transaction, revoked
    assert "committed" not in revoked, revoked
    rejoined = [r for r in caplog.records if "librdkafka #3437" in r.getMessage()]
    assert len(rejoined) == 1 and rejoined[0].levelno == logging.WARNING, caplog.text
    print(f"rejoined: {rejoined[0].getMessage()}\nthen stopped: {stopped}")
