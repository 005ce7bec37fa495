"""The saga list over a real changelog topic written the ways a tracker and others can write it.

A tracker writes states in transactions; one killed mid-transaction leaves records that are
never committed (here: aborted), which the list must never show. Anybody with write access
can put foreign bytes there; those sagas are listed as unreadable and their page shows the
bytes as stored, instead of the list failing. A tombstone removes a saga; a state written
after the console started appears without a restart.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable

import confluent_kafka as ck
import pytest
from confluent_kafka.admin import AdminClient, NewTopic

from choreo._console.index import Filter, SagaIndex, read_state
from choreo._saga.state import SagaState, SagaStatus

pytestmark = pytest.mark.stack


def state(saga: str, saga_id: str, status: SagaStatus) -> bytes:
    found = SagaState(saga_id=saga_id, saga=saga, version=2, status=status, updated_at=1.0)
    return found.to_bytes()


def until(check: Callable[[], bool], what: str, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, f"not within {timeout_s:g}s: {what}"
        time.sleep(0.2)


def test_the_list_shows_committed_states_only_and_survives_foreign_bytes(
    kafka: str, unique_name: Callable[[str], str]
) -> None:
    saga = unique_name("s").replace("_", "-")
    topic = f"choreo.saga.{saga}.state"
    admin = AdminClient({"bootstrap.servers": kafka})
    for future in admin.create_topics([NewTopic(topic, 2, 1)]).values():
        future.result(30)
    tracker = ck.Producer({"bootstrap.servers": kafka, "transactional.id": f"t-{uuid.uuid4().hex}"})
    tracker.init_transactions(30)
    tracker.begin_transaction()
    for n, status in enumerate([SagaStatus.COMPLETED, SagaStatus.COMPENSATED, SagaStatus.RUNNING]):
        tracker.produce(topic, key=f"ok-{n}".encode(), value=state(saga, f"ok-{n}", status))
    tracker.commit_transaction(30)
    tracker.begin_transaction()
    tracker.produce(topic, key=b"ok-0", value=state(saga, "ok-0", SagaStatus.FAILED))
    tracker.produce(topic, key=b"ghost", value=state(saga, "ghost", SagaStatus.RUNNING))
    tracker.flush(30)
    tracker.abort_transaction(30)  # what a tracker killed mid-batch leaves, once fenced
    foreign = ck.Producer({"bootstrap.servers": kafka})
    foreign.produce(topic, key=b"junk", value=b"\xff{not json")
    foreign.produce(topic, key=b"ok-2", value=None)  # retention dropped it
    assert foreign.flush(30) == 0

    index = SagaIndex({"bootstrap.servers": kafka}, [saga])
    index.start()
    try:
        until(lambda: index.listing(Filter(), 0, 10).total == 3, "3 sagas listed")
        time.sleep(1.0)  # anything else would be read by now
        listing = index.listing(Filter(), 0, 10)
        statuses = {r.saga_id: r.status for r in listing.rows}
        assert statuses == {"ok-0": "completed", "ok-1": "compensated", "junk": "unreadable"}
        assert dict(listing.counts[(saga, 2)]) == {"completed": 1, "compensated": 1}
        assert dict(listing.counts[(saga, 0)]) == {"unreadable": 1}
        junk = index.find(saga, "junk")
        assert junk is not None and read_state({"bootstrap.servers": kafka}, junk) == (
            b"\xff{not json"
        )

        foreign.produce(topic, key=b"late", value=state(saga, "late", SagaStatus.RUNNING))
        assert foreign.flush(30) == 0
        until(lambda: index.find(saga, "late") is not None, "a later state listed")
    finally:
        index.close()
    assert index.failure is None
