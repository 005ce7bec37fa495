"""The topology page: the choreography diagram of ``choreo docs`` and each group's lag.

The diagram is drawn from the same model (``choreo._docs.model``) and by the same SVG
renderer as ``docs/choreography.svg``. Each service's consumer group is its name (``choreo
run`` default) and each tracker's is ``choreo-saga-<saga>``; lag is the partition's last
stable offset (what a ``read_committed`` consumer can reach) minus the group's committed
offset, per partition.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from confluent_kafka import ConsumerGroupTopicPartitions, TopicPartition
from confluent_kafka.admin import AdminClient

from choreo._console.html import esc, table
from choreo._docs import svg
from choreo._docs.model import System
from choreo._transport.watermarks import latest_offsets

TIMEOUT_S = 10.0


@dataclass(frozen=True)
class Lag:
    group: str
    topic: str
    partition: int
    committed: int | None
    """None: the group never committed on this partition."""
    end: int

    @property
    def lag(self) -> int:
        return self.end - (self.committed or 0)


def group_lag(settings: Mapping[str, Any], groups: list[str]) -> list[Lag]:
    """Lag of every partition each group committed on (groups that never ran are absent)."""
    admin = AdminClient(dict(settings))
    committed: dict[str, list[TopicPartition]] = {}
    for group in groups:
        request = [ConsumerGroupTopicPartitions(group)]
        for future in admin.list_consumer_group_offsets(request).values():
            answer = future.result(TIMEOUT_S)
            committed[group] = [tp for tp in answer.topic_partitions or [] if tp.error is None]
    wanted = {TopicPartition(tp.topic, tp.partition) for tps in committed.values() for tp in tps}
    ends: dict[tuple[str, int], int] = {}
    if wanted:
        ends = latest_offsets(admin, wanted, committed=True, timeout_s=TIMEOUT_S)
    return [
        Lag(
            group,
            tp.topic,
            tp.partition,
            tp.offset if tp.offset >= 0 else None,
            ends.get((tp.topic, tp.partition), 0),
        )
        for group, tps in committed.items()
        for tp in sorted(tps, key=lambda t: (t.topic, t.partition))
    ]


def groups_of(system: System) -> list[str]:
    return [a.name for a in system.applications if a.kind != "ingress"]


def render(system: System, lags: list[Lag]) -> str:
    rows = [
        [
            esc(lag.group),
            esc(lag.topic),
            f'<span class="num">{lag.partition}</span>',
            f'<span class="num">{"-" if lag.committed is None else lag.committed}</span>',
            f'<span class="num">{lag.end}</span>',
            f'<b class="num lag">{lag.lag}</b>',
        ]
        for lag in lags
    ]
    if not rows:
        none = '<p class="muted">None of these groups has committed offsets on this broker.</p>'
        summary = lag_table = none
    else:
        lag_table = table(["group", "topic", "partition", "committed", "end", "lag"], rows, "lag")
        summary = table(["group", "partitions", "total lag", "most behind"], _by_group(lags))
    apps = table(
        ["application", "kind", "reads", "emits"],
        (
            [
                esc(a.name),
                esc(a.kind),
                esc(", ".join(sorted({h.topic for h in a.handles}))),
                esc(", ".join(a.emits)),
            ]
            for a in system.applications
        ),
    )
    return (
        f"<h2>Consumer lag by group</h2>{summary}"
        f'<div class="diagram">{svg.render(system, system.sagas)}</div>'
        f"<h2>Consumer lag by group and partition</h2>{lag_table}<h2>Applications</h2>{apps}"
    )


def _by_group(lags: list[Lag]) -> list[list[str]]:
    groups: dict[str, list[Lag]] = {}
    for lag in lags:
        groups.setdefault(lag.group, []).append(lag)
    rows = []
    for group, parts in groups.items():
        worst = max(parts, key=lambda p: p.lag)
        rows.append(
            [
                esc(group),
                f'<span class="num">{len(parts)}</span>',
                f'<b class="num">{sum(p.lag for p in parts)}</b>',
                esc(f"{worst.topic}[{worst.partition}]: {worst.lag}"),
            ]
        )
    return rows
