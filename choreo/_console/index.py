"""The sagas the console lists: one small row per saga, kept current from the changelogs.

A page must stay light with 100,000 sagas in the changelog, so the console does not hold
states (about 2 KB each) but a row of what the list filters and shows, plus where the state's
latest record sits; a saga's page reads that one record. A background thread follows every
changelog topic (``choreo.saga.<saga>.state``) ``read_committed`` from its start, as the
tracker's restore does, and keeps following it: the list is live without re-reading anything.

Rows are built from the JSON with ``.get``, not through ``SagaState``: a tracker newer than
this console may write fields or statuses it does not know, and those sagas must still list.
"""

from __future__ import annotations

import heapq
import json
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import confluent_kafka as ck
from confluent_kafka.admin import AdminClient

from choreo._saga.inspect import CHANGELOG_PREFIX, CHANGELOG_SUFFIX

_log = logging.getLogger("choreo.console")

FAILED_STEP_STATUSES = frozenset({"failed", "timed-out"})
DISCOVER_EVERY_S = 5.0
"""How often new changelog topics (a saga tracker started since) are looked for."""
BATCH = 2000
READ_TIMEOUT_S = 10.0


@dataclass(frozen=True, slots=True)
class Row:
    """What the list needs of one saga, and where its whole state is."""

    saga_id: str
    saga: str
    version: int
    status: str
    started_at: float | None
    updated_at: float
    failed_step: str | None
    reason: str | None
    topic: str
    partition: int
    offset: int


def row_of(topic: str, partition: int, offset: int, key: str, data: bytes) -> Row:
    """A row from a changelog record; fields the tracker did not write are left empty."""
    try:
        raw = json.loads(data)
    except ValueError:
        raw = {}
    state: Mapping[str, Any] = raw if isinstance(raw, dict) else {}
    steps = state.get("steps")
    failed = [
        name
        for name, step in (steps.items() if isinstance(steps, dict) else ())
        if isinstance(step, dict) and step.get("status") in FAILED_STEP_STATUSES
    ]
    return Row(
        saga_id=key,
        saga=saga_of(topic),
        version=_int(state.get("version")),
        status=str(state.get("status") or "unreadable"),
        started_at=_float(state.get("started_at")),
        updated_at=_float(state.get("updated_at")) or 0.0,
        failed_step=failed[-1] if failed else None,
        reason=None if state.get("reason") is None else str(state.get("reason")),
        topic=topic,
        partition=partition,
        offset=offset,
    )


def saga_of(changelog: str) -> str:
    """The saga name a changelog topic is for (its ``saga`` field may not be readable)."""
    return changelog.removeprefix(CHANGELOG_PREFIX).removesuffix(CHANGELOG_SUFFIX)


def _int(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _float(value: object) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return None


@dataclass(frozen=True)
class Filter:
    """The list's filters; every one given must hold."""

    state: str | None = None
    saga: str | None = None
    started_from: float | None = None
    started_to: float | None = None
    failed_step: str | None = None
    search: str | None = None
    """A substring of the saga id."""

    def checks(self) -> list[Callable[[Row], bool]]:
        """One test per criterion given, but the state (the counts are by state): only what
        was asked for runs on each of possibly 100,000 rows."""
        tests: list[Callable[[Row], bool]] = []
        if (saga := self.saga) is not None:
            tests.append(lambda r: r.saga == saga)
        if (since := self.started_from) is not None:
            tests.append(lambda r: (r.started_at or 0) >= since)
        if (until := self.started_to) is not None:
            tests.append(lambda r: (r.started_at or 0) <= until)
        if (step := self.failed_step) is not None:
            tests.append(lambda r: r.failed_step == step)
        if (text := self.search) is not None:
            tests.append(lambda r: text in r.saga_id)
        return tests


@dataclass(frozen=True)
class Listing:
    """One page of matching rows, with the counts the page shows beside it."""

    rows: list[Row]
    total: int
    """Rows matching every filter (the pages hold these)."""
    counts: dict[tuple[str, int], Counter[str]]
    """(saga, version) -> status -> sagas, over every filter but the state."""
    failed_steps: list[str]
    sagas: list[str]


class SagaIndex:
    """Rows for every saga in the changelogs of ``sagas`` (every saga when empty)."""

    def __init__(self, settings: Mapping[str, Any], sagas: Iterable[str] = ()) -> None:
        self._settings = dict(settings)
        self._only = {f"{CHANGELOG_PREFIX}{s}{CHANGELOG_SUFFIX}" for s in sagas}
        self._rows: dict[tuple[str, str], Row] = {}
        self._lock = threading.Lock()
        self._assigned: set[str] = set()
        self.failure: str | None = None
        """Why the list stopped following the changelogs (the pages say so), if it did."""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._follow, name="console-index", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(READ_TIMEOUT_S)

    def find(self, saga: str, saga_id: str) -> Row | None:
        with self._lock:
            return self._rows.get((saga, saga_id))

    def listing(self, wanted: Filter, offset: int, limit: int) -> Listing:
        with self._lock:
            rows = list(self._rows.values())
        selected = rows
        for test in wanted.checks():
            selected = [r for r in selected if test(r)]
        counts: dict[tuple[str, int], Counter[str]] = {}
        for (saga, version, status), n in Counter(
            (r.saga, r.version, r.status) for r in selected
        ).items():
            counts.setdefault((saga, version), Counter())[status] = n
        if (wanted_state := wanted.state) is not None:
            selected = [r for r in selected if r.status == wanted_state]
        newest = heapq.nsmallest(offset + limit, selected, key=lambda r: (-r.updated_at, r.saga_id))
        return Listing(
            rows=newest[offset:],
            total=len(selected),
            counts=dict(sorted(counts.items())),
            failed_steps=sorted({r.failed_step for r in rows if r.failed_step}),
            sagas=sorted({r.saga for r in rows}),
        )

    def apply(
        self, topic: str, partition: int, offset: int, key: bytes | None, value: bytes | None
    ) -> None:
        """Take one changelog record in: a new state, or a tombstone (the saga was dropped)."""
        if key is None:
            return
        saga_id = key.decode(errors="replace")
        row = None if value is None else row_of(topic, partition, offset, saga_id, value)
        with self._lock:
            if row is None:
                self._rows.pop((saga_of(topic), saga_id), None)
            else:
                self._rows[(row.saga, saga_id)] = row

    def _follow(self) -> None:
        consumer = ck.Consumer(
            {
                **self._settings,
                "group.id": "choreo-console",
                "enable.auto.commit": False,
                "isolation.level": "read_committed",
                "auto.offset.reset": "earliest",
            }
        )
        admin = AdminClient(self._settings)
        discovered = 0.0
        try:
            while not self._stop.is_set():
                if time.monotonic() - discovered > DISCOVER_EVERY_S:
                    self._discover(admin, consumer)
                    discovered = time.monotonic()
                if not self._assigned:
                    self._stop.wait(0.5)
                    continue
                for m in consumer.consume(BATCH, 0.5):
                    if m.error() is None:
                        self.apply(m.topic() or "", m.partition() or 0, m.offset() or 0,
                                   m.key(), m.value())  # fmt: skip
        except Exception as error:  # the list would silently freeze: say why
            self.failure = f"{type(error).__name__}: {error}"
            _log.exception("the saga list stopped following the changelogs")
            raise
        finally:
            consumer.close()

    def _discover(self, admin: AdminClient, consumer: ck.Consumer) -> None:
        try:
            topics = admin.list_topics(timeout=READ_TIMEOUT_S).topics
        except ck.KafkaException as error:
            _log.warning("listing saga changelogs: %s", error)
            return
        new = [
            ck.TopicPartition(name, partition, ck.OFFSET_BEGINNING)
            for name, meta in sorted(topics.items())
            if name.startswith(CHANGELOG_PREFIX)
            and name.endswith(CHANGELOG_SUFFIX)
            and (not self._only or name in self._only)
            and name not in self._assigned
            for partition in sorted(meta.partitions)
        ]
        if new:
            consumer.incremental_assign(new)
            self._assigned |= {tp.topic for tp in new}


def read_state(settings: Mapping[str, Any], row: Row) -> bytes | None:
    """The state record a row points at (None if compaction or retention removed it since)."""
    consumer = ck.Consumer(
        {
            **settings,
            "group.id": "choreo-console",
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
        }
    )
    try:
        consumer.assign([ck.TopicPartition(row.topic, row.partition, row.offset)])
        deadline = time.monotonic() + READ_TIMEOUT_S
        while time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is None or message.error() is not None:
                continue
            if message.key() == row.saga_id.encode() and message.offset() == row.offset:
                return message.value()
            return None
        return None
    finally:
        consumer.close()
