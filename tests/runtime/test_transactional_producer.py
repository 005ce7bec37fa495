"""A transactional producer fenced while it flushes, on the real broker.

confluent-kafka raises a fatal error once, from whichever call serves it first: the
producer's reports thread (then the next transactional call fails, and is handled) or
``flush``, as a ``KafkaException``, or as a ``SystemError`` when a delivery callback ran
after it in the same call. From ``flush`` it reached the runner as a bare library error and
stopped an exactly-once relay frozen past its transaction timeout (CI on e7abf93); before
the fix, 5 of 12 twin fences here came out as one of those two. Whichever call gets it, the
outcome must be the same: a twin's fence stops the producer with ``FencedError``; an
expired transaction is aborted (``TransactionAborted``) and a new producer goes on.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from typing import Any

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from choreo import KafkaConfig
from choreo._transport import txn_calls
from choreo._transport.base import TopicConfig, TransactionAborted
from choreo._transport.base import TopicPartition as ChoreoPartition
from choreo._transport.confluent import (
    ConfluentConsumer,
    ConfluentTransactionalProducer,
    ConfluentTransport,
    FencedError,
)

pytestmark = pytest.mark.stack
ROUNDS = 8
"""Fences per run: which call serves the fatal error is a race, so each path gets its turn."""
EXPIRY_MS = 2000


def _transport(kafka: str, **options: str) -> ConfluentTransport:
    return ConfluentTransport(KafkaConfig(bootstrap_servers=kafka, client_options=options))


async def _send(producer: ConfluentTransactionalProducer, topic: str, value: str) -> None:
    """Queue a record; its delivery is the flush's business (a fence fails it)."""
    await producer.send(topic, b"k", value.encode(), [])


def _twin(kafka: str, transactional_id: str) -> Producer:
    """Another process taking the transactional id: its ``init_transactions`` fences ours."""
    twin = Producer({"bootstrap.servers": kafka, "transactional.id": transactional_id})
    twin.init_transactions(30)
    return twin


def _committed(kafka: str, topic: str) -> list[str]:
    """Every value a read_committed reader sees in the topic's one partition."""
    reader = Consumer(
        {
            "bootstrap.servers": kafka,
            "group.id": f"reader-{uuid.uuid4().hex[:6]}",
            "isolation.level": "read_committed",
            "auto.offset.reset": "earliest",
            "enable.partition.eof": True,
        }
    )
    reader.subscribe([topic])
    values: list[str] = []
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        message = reader.poll(0.5)
        if message is None:
            continue
        if message.error() is not None:
            break  # end of the partition, as far as read_committed readers see
        values.append(bytes(message.value() or b"").decode())
    reader.close()
    return values


async def _commit_outcome(
    producer: ConfluentTransactionalProducer,
    consumer: ConfluentConsumer,
    offsets: dict[ChoreoPartition, int] | None = None,
) -> str:
    """How a commit ended: committed, aborted, fenced, or the other error it raised."""
    try:
        await producer.commit(offsets or {}, consumer)
    except FencedError:
        return "fenced"
    except TransactionAborted:
        return "aborted"
    except Exception as error:  # the assertion shows what it was
        return f"{type(error).__name__}: {error}"
    return "committed"


async def _go_on(
    kafka: str,
    producer: ConfluentTransactionalProducer,
    consumer: ConfluentConsumer,
    topic: str,
    outcome: str,
) -> list[str]:
    """After an abort, a new producer goes on with the same transactional id and commits
    "next"; then both close. What read_committed readers see in the topic."""
    if outcome == "aborted":
        await producer.begin()
        await _send(producer, topic, "next")
        await producer.commit({}, consumer)
    await producer.close()
    await consumer.close()
    return await asyncio.to_thread(_committed, kafka, topic)


async def _fenced_rounds(kafka: str) -> list[str]:
    topic = f"fenced-flush-{uuid.uuid4().hex[:6]}"
    transport = _transport(kafka)
    await transport.ensure_topics([TopicConfig(topic, 1)])
    consumer = transport.consumer(topic, "fenced-flush")  # whose offsets would go along
    outcomes: list[str] = []
    for round_ in range(ROUNDS):
        transactional_id = f"{topic}-{round_}"
        producer = transport.transactional_producer("fenced-flush", transactional_id)
        await producer.begin()
        await _send(producer, topic, "before")
        await producer.flush()
        twin = _twin(kafka, transactional_id)
        await _send(producer, topic, "after")  # answered "old epoch": the fence
        outcomes.append(await _commit_outcome(producer, consumer))
        await producer.close()
        del twin
    await consumer.close()
    return outcomes


def test_a_twin_fencing_a_flush_stops_the_producer_with_fenced_error(kafka: str) -> None:
    outcomes = asyncio.run(_fenced_rounds(kafka))
    assert outcomes == ["fenced"] * ROUNDS, outcomes


def _wait_expired(kafka: str, topic: str) -> None:
    """Until the coordinator has aborted the open transaction: a read_committed reader's
    end of the partition (the last stable offset) moves past it only then."""
    reader = Consumer(
        {
            "bootstrap.servers": kafka,
            "group.id": f"lso-{uuid.uuid4().hex[:6]}",
            "isolation.level": "read_committed",
        }
    )
    deadline = time.monotonic() + 60
    try:
        while reader.get_watermark_offsets(TopicPartition(topic, 0), 10, cached=False)[1] == 0:
            assert time.monotonic() < deadline, "the broker never expired the transaction"
            time.sleep(0.5)
    finally:
        reader.close()


async def _expired_then_committed(kafka: str) -> tuple[str, list[str]]:
    topic = f"expired-flush-{uuid.uuid4().hex[:6]}"
    transport = _transport(kafka, **{"transaction.timeout.ms": str(EXPIRY_MS)})
    await transport.ensure_topics([TopicConfig(topic, 1)])
    consumer = transport.consumer(topic, "expired-flush")
    producer = transport.transactional_producer("expired-flush", f"{topic}-tx")
    await producer.begin()
    await _send(producer, topic, "expired")
    await producer.flush()
    await asyncio.to_thread(_wait_expired, kafka, topic)
    await _send(producer, topic, "after the expiry")  # answered "old epoch"
    outcome = await _commit_outcome(producer, consumer)
    return outcome, await _go_on(kafka, producer, consumer, topic, outcome)


def test_a_transaction_expired_under_a_flush_is_aborted_and_the_next_one_commits(
    kafka: str,
) -> None:
    outcome, committed = asyncio.run(_expired_then_committed(kafka))
    assert outcome == "aborted", outcome
    assert committed == ["next"], f"read_committed saw {committed}"


class _Hooked:
    """The real producer, one of whose calls is the subclass's. A hook, not a fake: every
    other call goes to the real producer and broker."""

    def __init__(self, producer: Producer, release: threading.Event) -> None:
        self._producer = producer
        self._release = release

    def __getattr__(self, name: str) -> Any:
        return getattr(self._producer, name)

    def __len__(self) -> int:
        return len(self._producer)


class _Hung(_Hooked):
    """``send_offsets_to_transaction`` never returns (librdkafka #5456: a group coordinator
    that left the cluster)."""

    def send_offsets_to_transaction(self, *args: Any) -> None:
        self._release.wait()


async def _stuck_then_committed(kafka: str, **options: str) -> tuple[str, float, list[str]]:
    topic = f"stuck-offsets-{uuid.uuid4().hex[:6]}"
    transport = _transport(kafka, **options)
    await transport.ensure_topics([TopicConfig(topic, 1)])
    consumer = transport.consumer(topic, "stuck-offsets")
    producer = transport.transactional_producer("stuck-offsets", f"{topic}-tx")
    release = threading.Event()
    await producer.begin()
    producer._producer = _Hung(producer._producer, release)  # type: ignore[assignment]
    await _send(producer, topic, "stuck")
    began = time.monotonic()
    outcome = await _commit_outcome(producer, consumer, {ChoreoPartition(topic, 0): 1})
    waited = time.monotonic() - began
    release.set()
    return outcome, waited, await _go_on(kafka, producer, consumer, topic, outcome)


class _Taken(_Hooked):
    """``commit_transaction`` reaches the broker, which takes it, and then never returns."""

    def commit_transaction(self, *args: Any) -> None:
        self._producer.commit_transaction(*args)
        self._release.wait()


class _Unsent(_Hooked):
    """``commit_transaction`` never reaches the broker, and never returns."""

    def commit_transaction(self, *args: Any) -> None:
        self._release.wait()


class _Joined:
    """A rebalance listener that notes the consumer's first assignment."""

    def __init__(self) -> None:
        self.assigned = asyncio.Event()

    async def on_assigned(self, partitions: list[ChoreoPartition]) -> None:
        self.assigned.set()

    async def on_revoked(self, partitions: list[ChoreoPartition]) -> None:
        return None


async def _given_up_then_committed(kafka: str, hook: type[_Hooked]) -> tuple[str, list[str], int]:
    topic = f"taken-commit-{uuid.uuid4().hex[:6]}"
    transport = _transport(kafka)
    await transport.ensure_topics([TopicConfig(topic, 1)])
    consumer = transport.consumer(topic, f"{topic}-group")
    joined = _Joined()
    await consumer.subscribe([topic], joined)  # offsets go with a member's group metadata
    until = time.monotonic() + 30
    while not joined.assigned.is_set() and time.monotonic() < until:
        await consumer.poll(10, 0.2)
    producer = transport.transactional_producer(f"{topic}-group", f"{topic}-tx")
    release = threading.Event()
    await producer.begin()
    await _send(producer, topic, "first")  # the group's coordinator found, its offsets loaded
    await producer.commit({ChoreoPartition(topic, 0): 6}, consumer)
    await producer.begin()
    producer._producer = hook(producer._producer, release)  # type: ignore[assignment]
    await _send(producer, topic, "given up")
    txn_calls.STUCK_S = 3.0  # this commit's only: the first one found a new group's coordinator
    outcome = await _commit_outcome(producer, consumer, {ChoreoPartition(topic, 0): 7})
    release.set()
    if outcome == "committed":  # the service goes on as after any commit
        await producer.begin()
        await _send(producer, topic, "next")
        await producer.commit({ChoreoPartition(topic, 0): 8}, consumer)
    found = await consumer.committed_offsets([ChoreoPartition(topic, 0)])
    committed = await _go_on(kafka, producer, consumer, topic, outcome)
    return outcome, committed, found.get(ChoreoPartition(topic, 0), -1)


@pytest.mark.parametrize(
    ("hook", "expected", "seen", "offset"),
    [
        (_Taken, "committed", ["first", "given up", "next"], 8),
        (_Unsent, "aborted", ["first", "next"], 6),
    ],
    ids=["the broker took it", "it never reached the broker"],
)
def test_a_commit_whose_call_never_returns_counts_as_what_the_broker_made_of_it(
    kafka: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    hook: type[_Hooked],
    expected: str,
    seen: list[str],
    offset: int,
) -> None:
    """Given up after ``STUCK_S``: counted as aborted when the broker took it, its records
    would be handled again and their outputs sent twice; counted as committed when it did
    not, they would be lost."""
    monkeypatch.setattr(txn_calls, "STUCK_S", txn_calls.STUCK_S)  # restored after the test
    outcome, committed, found = asyncio.run(_given_up_then_committed(kafka, hook))
    assert outcome == expected, outcome
    assert committed == seen, f"read_committed saw {committed}"
    assert found == offset
    assert "transaction commit unfinished after 3s" in caplog.text
    kept = "the transaction given up had committed" in caplog.text
    assert kept == (expected == "committed")


@pytest.mark.parametrize(
    ("settings", "options", "reason"),
    [
        ({"STUCK_S": 3.0}, {}, "transaction send offsets unfinished after 3s"),
        (
            {"TRANSACTION_CALL_S": 1.0, "HUNG_MARGIN_S": 1.0},
            {"socket.timeout.ms": "3000"},  # every client's: not so short that load trips it
            "send offsets outlived its own timeout and a request's (librdkafka #5456)",
        ),
    ],
    ids=["unfinished after STUCK_S", "past its own timeout and a request's"],
)
def test_an_offsets_call_that_never_returns_is_given_up_and_the_next_commit_lands(
    kafka: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    settings: dict[str, float],
    options: dict[str, str],
    reason: str,
) -> None:
    """The hung call (as librdkafka's ``send_offsets_to_transaction`` with its group coordinator
    gone, #5456) is given up once past its own timeout and one request's, before ``STUCK_S``
    (left at 60 s in the second case)."""
    for name, value in settings.items():
        monkeypatch.setattr(txn_calls, name, value)
    outcome, waited, committed = asyncio.run(_stuck_then_committed(kafka, **options))
    assert outcome == "aborted", outcome
    assert waited < 30, f"gave up after {waited:.1f}s"
    assert committed == ["next"], f"read_committed saw {committed}"
    assert reason in caplog.text
