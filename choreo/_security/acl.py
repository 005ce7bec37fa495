"""Least-privilege ACLs derived from what services and saga trackers declare, and the diff
against what a cluster has.

A service's principal may read the topics its handlers subscribe to (retry
topics included) with its consumer group, and write the topics of the events
its handlers build (or that it declares in ``Service(emits=...)``; see
``choreo._docs.emits``) plus its own retry and dead-letter
topics; with exactly-once, also use its transactional ids
(``choreo.<group>.<instance>``, granted by the prefix ``choreo.<group>.``, which
no other group's ids start with: a group name holds no ``.``). A saga tracker may read its
input topics with its group, write the topics of its compensations and parked
events and its dead-letter topics, read and write its state changelog, and use its
transactional ids
(``choreo.choreo-saga-<saga>.<instance>``). Nothing else: no CREATE (topics come from
``choreo acl apply``, run as an admin), no cluster rights.

Read and write imply describe, which is all the runtime's start-up checks need
(metadata, ``describe_consumer_groups``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

from choreo._config import ServiceConfig, transactional_prefix
from choreo._dlq.replay import ledger, replay_transactional_id
from choreo._docs.emits import service_emits
from choreo._errors import TopologyError
from choreo._runtime.dead_letters import dlq_topic
from choreo._runtime.retry_topics import PREFIX as RETRY_PREFIX
from choreo._runtime.runner import ServiceRunner
from choreo._saga.definition import Saga
from choreo._saga.topology import plan, tracker_name
from choreo._schemas import Catalog
from choreo._service import Service
from choreo._transport.base import TopicConfig
from choreo._transport.memory import MemoryTransport

ResourceType = Literal["topic", "group", "transactional_id"]
Operation = Literal["READ", "WRITE"]


@dataclass(frozen=True, order=True)
class Acl:
    """One ALLOW rule for one principal, on any host."""

    principal: str
    resource: ResourceType
    name: str
    operation: Operation
    prefixed: bool = False
    """The name is a prefix (transactional ids carry the instance id after it)."""

    def __str__(self) -> str:
        pattern = "prefix " if self.prefixed else ""
        return f"{self.principal:<28} {self.operation:<5} {self.resource} {pattern}{self.name}"


@dataclass(frozen=True)
class Grant:
    """What one service or tracker needs: its principal's ACLs and the topics to create."""

    owner: str
    """The service name, or ``saga <name>`` for a tracker."""
    principal: str
    acls: tuple[Acl, ...]
    topics: tuple[TopicConfig, ...]


def default_principal(owner: str) -> str:
    """``User:<service name>``; a tracker's is ``User:choreo-saga-<saga>``."""
    return f"User:{owner}"


def replay_acls(who: str, owner: str, sources: Iterable[str]) -> list[Acl]:
    """What ``choreo dlq replay`` of ``owner``'s dead letters needs when run as ``who``, the
    owner's principal (``choreo acl apply --replay``): read each DLQ topic, write the topic
    its name says the records came from (nothing else, so no forged header or ``--to-topic``
    reaches another team's topic), read and write the owner's replay ledger, and use that
    DLQ topic's own transactional id (literal, not a prefix)."""
    marks = ledger(owner).name
    acls = [Acl(who, "topic", marks, "READ"), Acl(who, "topic", marks, "WRITE")]
    for source in sources:
        parked = dlq_topic(owner, source)
        acls += [
            Acl(who, "topic", parked, "READ"),
            Acl(who, "topic", source, "WRITE"),
            Acl(who, "transactional_id", replay_transactional_id(parked), "WRITE"),
        ]
    return acls


def service_grant(
    service: Service,
    config: ServiceConfig,
    catalog: Catalog,
    principal: str | None = None,
    *,
    replay: bool = False,
) -> Grant:
    """The service's ACLs, computed from the same subscription logic ``choreo run`` uses;
    with ``replay``, also what replaying its own dead letters needs (``replay_acls``)."""
    runner = ServiceRunner(service, config, MemoryTransport(), catalog)
    who = principal or default_principal(service.name)
    retries = {t for t in runner.topics if t.startswith(RETRY_PREFIX)}
    sources = [t for t in runner.topics if t not in retries]
    emitted = []
    for event in sorted(service_emits(service), key=lambda e: e.event_type):
        try:
            emitted.append(catalog.topic_of(event.event_type).name)
        except TopologyError:
            raise TopologyError(
                f"{service.name}: emits {event.event_type}, but no topic in the catalog carries it"
            ) from None
    parked = (dlq_topic(service.name, t) for t in sources)
    alarms = (schedule.topic for schedule in service.schedules)  # each tick writes the next
    writes = {*emitted, *retries, *parked, *alarms}
    acls = [Acl(who, "topic", t, "READ") for t in runner.topics]
    acls += [Acl(who, "topic", t, "WRITE") for t in writes]
    acls.append(Acl(who, "group", runner.group_id, "READ"))
    if config.exactly_once:
        prefix = transactional_prefix(runner.group_id)
        acls.append(Acl(who, "transactional_id", prefix, "WRITE", prefixed=True))
    topics = runner.topic_configs()
    if replay:
        acls += replay_acls(who, service.name, sources)
        topics.append(ledger(service.name))
    return Grant(service.name, who, tuple(sorted(set(acls))), tuple(topics))


def tracker_grant(
    sagas: Sequence[Saga], catalog: Catalog, principal: str | None = None, *, replay: bool = False
) -> Grant:
    """A saga tracker's ACLs (see ``choreo._saga.tracker`` for its group and transactional ids);
    with ``replay``, also what replaying its own dead letters needs (``replay_acls``)."""
    topology = plan(sagas, catalog)
    group = tracker_name(topology.saga)
    who = principal or default_principal(group)
    dead_letters = [topology.dead_letters(t) for t in topology.inputs]
    writes = (*topology.outputs, topology.changelog, *dead_letters)
    acls = [Acl(who, "topic", t, "READ") for t in (*topology.inputs, topology.changelog)]
    acls += [Acl(who, "topic", t, "WRITE") for t in writes]
    acls += [
        Acl(who, "group", group, "READ"),
        Acl(who, "transactional_id", transactional_prefix(group), "WRITE", prefixed=True),
    ]
    topics = topology.topic_configs(catalog)
    if replay:
        acls += replay_acls(who, group, topology.inputs)
        topics.append(ledger(group))
    return Grant(f"saga {topology.saga}", who, tuple(sorted(set(acls))), tuple(topics))


@dataclass(frozen=True)
class AclDiff:
    add: tuple[Acl, ...]
    remove: tuple[Acl, ...]
    keep: tuple[Acl, ...]

    def lines(self) -> list[str]:
        """``+`` to create, ``-`` to delete, `` `` already there; sorted by principal."""
        marked = [("+", a) for a in self.add] + [("-", a) for a in self.remove]
        marked += [(" ", a) for a in self.keep]
        return [f"{mark} {acl}" for mark, acl in sorted(marked, key=lambda m: (m[1], m[0]))]


def diff(wanted: Iterable[Acl], existing: Iterable[Acl]) -> AclDiff:
    """Per principal in ``wanted``: what to add, and which of its other ACLs to remove."""
    want, have = set(wanted), set(existing)
    principals = {acl.principal for acl in want}
    have = {acl for acl in have if acl.principal in principals}
    return AclDiff(
        tuple(sorted(want - have)), tuple(sorted(have - want)), tuple(sorted(want & have))
    )
