"""What the Kafka client backends share: topic settings, the ensure-topics algorithm,
the "no broker answered" wording, rate-limited broker-down logs.

Kept out of the registry (which imports the backends to build them), so that a
backend imports these without importing the registry back, and the confluent
and aiokafka transports differ only where their client APIs do.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

from choreo._errors import TransportError
from choreo._transport.base import TopicConfig

TOPIC_READY_TIMEOUT_S = 30.0
"""How long ``ensure_topics`` waits for created topics to show up in metadata."""

_log = logging.getLogger("choreo.transport")


def topic_settings(topic: TopicConfig) -> dict[str, str]:
    """The broker-side topic configs a ``TopicConfig`` asks for (Kafka's own names)."""
    settings = dict(topic.configs)
    if topic.retention_ms is not None:
        settings["retention.ms"] = str(topic.retention_ms)
    if topic.compacted:
        settings["cleanup.policy"] = "compact"
    return settings


def unreachable(bootstrap_servers: str, detail: str) -> TransportError:
    """The one wording for "no broker answered", so operators can grep for it."""
    return TransportError(f"no Kafka broker answered at {bootstrap_servers}: {detail}")


async def ensure_topics_with(
    topics: Sequence[TopicConfig],
    *,
    existing: Callable[[], Awaitable[dict[str, int]]],
    create: Callable[[list[TopicConfig]], Awaitable[None]],
    bootstrap_servers: str,
) -> None:
    """Create what is missing, then wait until metadata lists it.

    ``existing`` maps topic name to partition count from a full metadata
    listing (never a per-topic lookup, which could auto-create the topic with
    the broker's default partition count). ``create`` must ignore
    "already exists", since another service may win the race.
    """
    by_name: dict[str, TopicConfig] = {}
    for topic in topics:
        by_name.setdefault(topic.name, topic)  # a repeated name: the first one wins
    wanted = list(by_name.values())
    current = await existing()
    for topic in wanted:
        have = current.get(topic.name)
        if have is not None and have != topic.partitions:
            _log.warning(
                "topic %s exists with %d partitions (%d wanted); leaving it as it is",
                topic.name,
                have,
                topic.partitions,
            )
    missing = [t for t in wanted if t.name not in current]
    if not missing:
        return
    await create(missing)
    deadline = time.monotonic() + TOPIC_READY_TIMEOUT_S
    while True:
        current = await existing()
        pending = [t.name for t in missing if t.name not in current]
        if not pending:
            return
        if time.monotonic() > deadline:
            raise TransportError(
                f"topics {', '.join(pending)} were created on {bootstrap_servers} but did not "
                f"appear in metadata within {TOPIC_READY_TIMEOUT_S:.0f}s"
            )
        await asyncio.sleep(0.05)


class ThrottledLog:
    """Logs each kind of error at most once per interval, counting the ones it held back.

    A broker outage makes clients report the same failure many times a
    second; one line per kind per interval says the same without flooding.
    """

    def __init__(self, logger: logging.Logger, interval_s: float = 30.0) -> None:
        self._logger = logger
        self._interval_s = interval_s
        self._last: dict[object, tuple[float, int]] = {}

    def __call__(self, kind: object, level: int, message: str) -> None:
        now = time.monotonic()
        last, held_back = self._last.get(kind, (float("-inf"), 0))
        if now - last < self._interval_s:
            self._last[kind] = (last, held_back + 1)
            return
        self._last[kind] = (now, 0)
        if held_back:
            message = f"{message} (repeated {held_back} more times)"
        self._logger.log(level, "%s", message)


COORDINATOR_MOVING = frozenset({14, 15, 16})
"""COORDINATOR_LOAD_IN_PROGRESS, COORDINATOR_NOT_AVAILABLE, NOT_COORDINATOR: for a few seconds
after a broker starts or a coordinator moves, a group cannot be described; Java's admin client
retries these, and a service started beside its brokers (``docker compose up``) meets them."""
COORDINATOR_WAIT_S = 30.0

_T = TypeVar("_T")


class CoordinatorMoving(TransportError):
    """The group's coordinator is loading or moving: asking again later will answer."""


async def while_coordinator_moves(
    call: Callable[[], Awaitable[_T]], what: str, wait_s: float = COORDINATOR_WAIT_S
) -> _T:
    """``call()``, asked again (backing off) while it raises :class:`CoordinatorMoving`, up to
    ``wait_s``; then the last such error, naming ``what`` and how long it waited."""
    deadline = time.monotonic() + wait_s
    delay = 0.2
    while True:
        try:
            return await call()
        except CoordinatorMoving as moving:
            if time.monotonic() + delay > deadline:
                raise TransportError(f"{what}: {moving} (still, after {wait_s:g}s)") from None
            await asyncio.sleep(delay)
            delay = min(2 * delay, 2.0)
