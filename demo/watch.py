"""What the demo reads back: saga states from the tracker's changelog, the customers'
cancellation notices, DLQ depths, traces.

All of it from the real stack as an operator would see it: the changelog is read with
``read_committed`` (only states the tracker committed), the DLQ depth is the topics' offsets,
and a trace is whatever Jaeger's query API returns for it.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.request
from collections.abc import Collection
from typing import Any, cast

import confluent_kafka as ck

from choreo import _headers
from choreo._dlq.reader import read_partitions
from choreo._runtime.dead_letters import PREFIX as DLQ_PREFIX
from choreo._saga.state import SagaState
from choreo._saga.store import changelog_topic
from choreo._schemas import Catalog, Codec
from choreo._transport.watermarks import watermarks
from services.events import CancellationSent


class _Follower:
    """Reads one topic from where it ends now, in a thread, handing each record to ``_take``."""

    def __init__(self, bootstrap: str, topic: str, name: str) -> None:
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._consumer = ck.Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": f"choreo-demo-{name}-{time.time_ns()}",
                "enable.auto.commit": False,
                "isolation.level": "read_committed",
            }
        )
        partitions = _partitions(self._consumer, topic)
        ends = [
            self._consumer.get_watermark_offsets(ck.TopicPartition(topic, p))[1] for p in partitions
        ]
        self._consumer.assign(
            [ck.TopicPartition(topic, p, end) for p, end in zip(partitions, ends, strict=True)]
        )
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self._consumer.close()

    def _take(self, key: str, value: bytes, headers: dict[str, bytes]) -> None:
        raise NotImplementedError

    def _run(self) -> None:
        while not self._stop.is_set():
            for message in self._consumer.consume(500, 0.2):
                key, value = message.key(), message.value()
                if message.error() is None and key is not None and value is not None:
                    headers = dict(cast(list[tuple[str, bytes]], message.headers() or []))
                    with self._lock:
                        self._take(key.decode(), value, headers)


class SagaWatcher(_Follower):
    """Follows the latest state of the given sagas from the moment it starts."""

    def __init__(self, bootstrap: str, saga: str, saga_ids: Collection[str]) -> None:
        self.states: dict[str, SagaState] = {}
        self._ids = frozenset(saga_ids)
        super().__init__(bootstrap, changelog_topic(saga), "saga-watch")

    def snapshot(self) -> dict[str, SagaState]:
        with self._lock:
            return dict(self.states)

    def _take(self, key: str, value: bytes, headers: dict[str, bytes]) -> None:
        if key in self._ids:
            self.states[key] = SagaState.from_bytes(value)


Notices = dict[str, CancellationSent]
"""One order's notices by event id (``ce_id``)."""


class NoticeWatcher(_Follower):
    """The cancellation notices the given orders' customers were sent, from the moment it starts.

    What a customer reads is the last hop of a compensation (the tracker cancels the order, the
    orders service says why, notifications words it): the demo checks it arrived, and says what.
    """

    def __init__(self, bootstrap: str, catalog: Catalog, order_ids: Collection[str]) -> None:
        self._codec = Codec(catalog)
        self._ids = frozenset(order_ids)
        self._notices: dict[str, Notices] = {}
        topic = catalog.topic_of(CancellationSent.event_type).name
        super().__init__(bootstrap, topic, "notice-watch")

    def wait_for(self, order_ids: Collection[str], timeout_s: float) -> dict[str, Notices]:
        """Every notice seen, once those of ``order_ids`` are all in or the deadline passed.

        A notice redelivered after a crash comes again under its first event id, which
        consumers drop: it counts once. Two ids for one order are two emails."""
        deadline = time.monotonic() + timeout_s
        while True:
            with self._lock:
                seen = dict(self._notices)
            if set(order_ids) <= seen.keys() or time.monotonic() > deadline:
                return seen
            time.sleep(0.2)

    def _take(self, key: str, value: bytes, headers: dict[str, bytes]) -> None:
        if key in self._ids and self._codec.event_type_of(value) == CancellationSent.event_type:
            notice = self._codec.decode(value, CancellationSent)
            self._notices.setdefault(key, {})[headers[_headers.ID].decode()] = notice


def _partitions(consumer: ck.Consumer, topic: str, timeout_s: float = 60) -> list[int]:
    """The topic's partitions, once its writer (the tracker, a service) has created it."""
    deadline = time.monotonic() + timeout_s
    while True:
        found = consumer.list_topics(topic, timeout=10).topics.get(topic)
        if found is not None and found.error is None and found.partitions:
            return sorted(found.partitions)
        if time.monotonic() > deadline:
            raise RuntimeError(f"nobody created {topic} in {timeout_s:.0f}s")
        time.sleep(0.5)


Offsets = dict[tuple[str, int], int]


def dlq_ends(bootstrap: str) -> Offsets:
    """The end offset of every dead-letter topic partition: where "added since" starts."""
    consumer = ck.Consumer({"bootstrap.servers": bootstrap, "group.id": "choreo-demo-dlq"})
    try:
        return {
            (name, p): watermarks(consumer, ck.TopicPartition(name, p))[1]
            for name, topic in consumer.list_topics(timeout=15).topics.items()
            if name.startswith(DLQ_PREFIX)
            for p in topic.partitions
        }
    finally:
        consumer.close()


def dlq_added(bootstrap: str, before: Offsets) -> dict[str, int]:
    """Dead letters written since ``before``, per topic, counted by reading them.

    Offsets alone would over-count: a transactional writer (the saga tracker) leaves a
    commit marker after each record.
    """
    consumer = ck.Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "choreo-demo-dlq",
            "isolation.level": "read_committed",
            "enable.auto.commit": False,
        }
    )
    added: dict[str, int] = {}
    try:
        since = [ck.TopicPartition(t, p, before.get((t, p), 0)) for t, p in dlq_ends(bootstrap)]
        for message in read_partitions(consumer, since):
            topic = cast(str, message.topic())
            added[topic] = added.get(topic, 0) + 1
        return added
    finally:
        consumer.close()


def trace_of(state: SagaState) -> str | None:
    """The trace id the saga's start event carried (``traceparent`` = version-trace-span-flags)."""
    parent = state.trace.get("traceparent")
    return parent.split("-")[1] if parent else None


def jaeger_trace(query_url: str, trace_id: str, wait_s: float = 20) -> tuple[int, list[str]]:
    """(span count, service names) of a trace, waiting for its spans to be exported."""
    deadline = time.monotonic() + wait_s
    found: tuple[int, list[str]] = (0, [])
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{query_url}/api/traces/{trace_id}", timeout=5) as reply:
                body: dict[str, Any] = json.load(reply)
        except OSError:
            body = {}
        for trace in body.get("data") or []:
            services = sorted({p["serviceName"] for p in trace["processes"].values()})
            found = (len(trace["spans"]), services)
        if found[0]:
            return found
        time.sleep(1)
    return found
