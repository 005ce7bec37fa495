"""What ``choreo acl apply --replay`` adds: exactly what a replay of the owner's own DLQs needs,
and without the flag nothing of it (a running service cannot write its input topics)."""

from __future__ import annotations

import sys
from pathlib import Path

import choreo
from choreo._dlq.replay import ledger, replay_transactional_id
from choreo._schemas import Catalog
from choreo._security.acl import Grant, service_grant, tracker_grant
from services import shipping

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "saga"))
import saga_defs  # noqa: E402

CATALOG = Catalog.load(ROOT / "schemas")


def _added(without: Grant, with_replay: Grant) -> set[tuple[str, str, str]]:
    assert set(without.acls) <= set(with_replay.acls)
    added = set(with_replay.acls) - set(without.acls)
    assert not any(a.prefixed for a in added)
    return {(a.resource, a.name, a.operation) for a in added}


def _expected(owner: str, plain: Grant) -> set[tuple[str, str, str]]:
    """Read on each DLQ topic the owner writes, write on its source, its transactional id."""
    prefix = f"choreo.dlq.{owner}."
    parked = {a.name for a in plain.acls if a.operation == "WRITE" and a.name.startswith(prefix)}
    marks = ledger(owner).name
    assert marks == f"choreo.dlq-replays.{owner}"  # its own: no other owner's marks
    expected = {("topic", marks, "READ"), ("topic", marks, "WRITE")}
    for topic in parked:
        expected |= {
            ("topic", topic, "READ"),
            ("topic", topic.removeprefix(prefix), "WRITE"),
            ("transactional_id", replay_transactional_id(topic), "WRITE"),
        }
    assert len(expected) > 2
    return expected - {(a.resource, a.name, a.operation) for a in plain.acls}  # had already


def test_a_service_may_replay_its_own_dlqs_back_to_their_sources_only() -> None:
    config = choreo.ServiceConfig()
    plain = service_grant(shipping.svc, config, CATALOG)
    replaying = service_grant(shipping.svc, config, CATALOG, replay=True)
    assert _added(plain, replaying) == _expected(shipping.svc.name, plain)
    assert not any(a.name.startswith("choreo.dlq.") and a.operation == "READ" for a in plain.acls)
    added = {t.name for t in replaying.topics} - {t.name for t in plain.topics}
    assert added == {ledger(shipping.svc.name).name}


def test_a_saga_tracker_may_replay_its_own_dlqs_too() -> None:
    plain = tracker_grant([saga_defs.order_saga], CATALOG)
    replaying = tracker_grant([saga_defs.order_saga], CATALOG, replay=True)
    owner = f"choreo-saga-{saga_defs.order_saga.name}"
    assert _added(plain, replaying) == _expected(owner, plain)
