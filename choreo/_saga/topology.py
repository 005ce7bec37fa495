"""Which topics a tracker reads and writes, and the co-partitioning it relies on.

The tracker keeps a saga's state next to the saga's events: state for input partition *p*
lives in changelog partition *p*, on the instance that owns *p*. That only works if every
event of one saga arrives on the same partition number, so:

* all input topics have the same partition count, and
* they are keyed by the same field holding the same value for one saga (the shop topics are
  all keyed by ``order_id``; publish a saga's events with its order id as correlation id or
  at least as key).

Both are checked here, against the catalog and against the broker, before anything is read.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from choreo._errors import TopologyError
from choreo._runtime.dead_letters import dlq_topic
from choreo._runtime.runner import DLQ_RETENTION_MS
from choreo._saga.definition import Saga
from choreo._saga.store import changelog_topic
from choreo._schemas import Catalog
from choreo._transport.base import TopicConfig

CHANGELOG_SEGMENT_MS = 3_600_000
"""The changelog's segments roll hourly: Kafka never compacts the active segment, and by
default it rolls after 7 days or 1 GB, so a quiet tracker's changelog would hold, and a
restarting instance re-read, up to a week of superseded states per partition."""


def tracker_name(saga: str) -> str:
    """The tracker's consumer group, event source and, like a service's name, DLQ prefix."""
    return f"choreo-saga-{saga}"


@dataclass(frozen=True)
class Topology:
    saga: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    partitions: int
    changelog: str

    def dead_letters(self, topic: str) -> str:
        """Where an input record the tracker cannot read goes, as for any consumer."""
        return dlq_topic(tracker_name(self.saga), topic)

    def topic_configs(self, catalog: Catalog) -> list[TopicConfig]:
        """Every topic the tracker needs, for ``ensure_topics``."""
        configs = [
            spec.topic_config()
            for name in sorted({*self.inputs, *self.outputs})
            for spec in [catalog.topics[name]]
        ]
        configs.append(
            TopicConfig(
                self.changelog,
                self.partitions,
                compacted=True,
                configs=(("segment.ms", str(CHANGELOG_SEGMENT_MS)),),
            )
        )
        configs += [
            TopicConfig(self.dead_letters(name), 1, DLQ_RETENTION_MS) for name in self.inputs
        ]
        return configs


def plan(definitions: Sequence[Saga], catalog: Catalog) -> Topology:
    """Validate every definition and derive the topics; errors name the saga and topic."""
    for definition in definitions:
        definition.validate(catalog)
    name = definitions[0].name
    inputs = sorted(
        {
            catalog.topic_of(event.event_type).name
            for definition in definitions
            for event in definition.event_types()
        }
    )
    outputs = sorted(
        {
            catalog.topic_of(event.event_type).name
            for definition in definitions
            for event in definition.emitted_types()
        }
    )
    specs = [catalog.topics[topic] for topic in inputs]
    counts = {spec.name: spec.partitions for spec in specs}
    if len(set(counts.values())) != 1:
        raise TopologyError(
            f"saga '{name}' reads topics with different partition counts "
            f"({_listing(counts)}); a saga's events must share partition numbers"
        )
    keys = {spec.name: spec.key for spec in specs}
    if len(set(keys.values())) != 1:
        raise TopologyError(
            f"saga '{name}' reads topics keyed by different fields ({_listing(keys)}); "
            "a saga's events must share one key"
        )
    return Topology(name, tuple(inputs), tuple(outputs), specs[0].partitions, changelog_topic(name))


def check_broker(topology: Topology, existing: Mapping[str, int]) -> None:
    """The topics as they really are: a topic created by hand may disagree with the catalog."""
    wrong = {
        topic: existing[topic]
        for topic in (*topology.inputs, topology.changelog)
        if topic in existing and existing[topic] != topology.partitions
    }
    if wrong:
        raise TopologyError(
            f"saga '{topology.saga}' needs {topology.partitions} partitions on each of its "
            f"topics, but the broker has {_listing(wrong)}"
        )


def _listing(values: Mapping[str, object]) -> str:
    return ", ".join(f"{topic}: {value}" for topic, value in sorted(values.items()))
