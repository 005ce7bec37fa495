"""On the real broker: user code that raises, unreadable input, retention, timers after a stop."""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import confluent_kafka as ck
import pytest
import saga_defs as d
from conftest import World, answer_compensations, oid, stop, tracked

from choreo import _headers
from choreo._runtime import dead_letters as dlq
from choreo._saga.store import changelog_topic, read_changelog_bytes
from services.events import SagaFailed

pytestmark = pytest.mark.stack


@pytest.fixture(scope="module")
def fragile(kafka: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    with tracked(kafka, tmp_path_factory.mktemp("fragile"), "saga_defs:fragile_saga") as world:
        yield world


def healthy_saga_completes(world: World) -> None:
    """The tracker is still at work after whatever came before."""
    o = oid()
    for event in (d.placed(o), d.reserved(o), d.authorized(o), d.completed(o)):
        world.publish(event)
    world.wait_status(o, "completed")


def test_a_raising_condition_parks_the_saga_and_the_tracker_goes_on(fragile: World) -> None:
    o = oid()
    fragile.publish(d.placed(o, total=d.BOOM))
    state = fragile.wait_status(o, "failed")
    fragile.wait(lambda: fragile.commands(o) == ["SagaFailed"], what="the parked event")
    parked = fragile.emitted[o][0].event
    assert isinstance(parked, SagaFailed) and parked.step == "approval"
    assert "ValueError" in (state.reason or parked.reason)
    log = fragile.logs()
    assert f"{o} parked: the condition (when=) of step 'approval' raised ValueError" in log
    healthy_saga_completes(fragile)


def test_a_raising_builder_parks_until_the_step_is_undone_by_hand(fragile: World) -> None:
    o = oid()
    fragile.publish(d.placed(o, total=str(int(d.BOOM) + 1)))
    fragile.publish(d.reserved(o))
    fragile.wait_step(o, "reserve-stock")
    fragile.publish(d.declined(o))
    fragile.wait_status(o, "failed")
    assert "building shop.inventory.ReleaseStock for step 'reserve-stock'" in fragile.logs()
    fragile.publish(d.released(o))  # a person released the stock
    fragile.wait_status(o, "compensated")
    assert fragile.commands(o) == ["SagaFailed", "CancelOrder"]


def test_unreadable_input_goes_to_the_trackers_dead_letter_topic(fragile: World) -> None:
    orders = fragile.topics["shop.orders"]
    o = oid()
    no_correlation = [
        (k, v)
        for k, v in _headers.event_headers(b"shop.orders.OrderPlaced", b"tests", "e-1", o, None)
        if k != _headers.CORRELATION
    ]
    fragile.producer.produce(orders, key=b"junk", value=b"not avro at all")
    fragile.producer.produce(
        orders,
        key=o.encode(),
        value=fragile.codec.encode(d.placed(o)),
        headers=no_correlation,  # type: ignore[arg-type]
    )
    binary_id = [
        (k, b"\xff\xfe\x00\x80" if k == _headers.ID else v)
        for k, v in _headers.event_headers(b"shop.orders.OrderPlaced", b"tests", "e-2", o, None)
    ]
    fragile.producer.produce(
        orders,
        key=o.encode(),
        value=fragile.codec.encode(d.placed(o)),
        headers=binary_id,  # type: ignore[arg-type]
    )
    fragile.producer.flush(10)
    healthy_saga_completes(fragile)  # the tracker read all three and is still deciding
    letters = read_all(fragile.kafka, dlq.dlq_topic(fragile.source, orders), 3)
    reasons = {h[dlq.REASON].decode(): (key, value, h) for key, value, h in letters}
    assert set(reasons) == {"not-avro", "missing-header", "bad-header"}
    assert b"ce_id" in reasons["bad-header"][2][dlq.ERROR_MESSAGE]
    key, value, headers = reasons["not-avro"]
    assert (key, value) == (b"junk", b"not avro at all")
    assert headers[dlq.TOPIC] == orders.encode()
    assert headers[dlq.GROUP] == fragile.source.encode()
    assert b"choreo_correlation_id" in reasons["missing-header"][2][dlq.ERROR_MESSAGE]
    assert o not in fragile.states()


def test_changelog_records_that_are_not_states_dead_letter_their_sagas_events(
    kafka: str, tmp_path: Path
) -> None:
    """Something else wrote to the changelog: the saga's latest record is garbage, and
    another's peeks as a state (its timer due at once) but is not one. The tracker neither
    crashes nor decides on an older state: the saga's event goes to the dead-letter topic as
    ``unreadable-state``, the bad timer is not fired, and every other saga goes on. A junk
    record after that event, read in the same batch, is dead-lettered after it: in input
    order, though a batch finds junk in its first pass and unreadable states in its second."""
    with World(kafka, tmp_path) as world:
        tracker = world.start_tracker()
        o = oid()
        world.publish(d.placed(o))
        world.wait_status(o, "running")
        stop(tracker)
        changelog = changelog_topic(world.name)
        held = read_changelog_bytes({"bootstrap.servers": kafka}, changelog)
        (partition,) = [p for p, states in held.items() if o in states]
        peeks_but_is_not = (
            b'{"saga_id":"x","saga":"y","version":1,"status":"running","steps":"oops",'
            b'"sub_versions":{},"wake_at":1.0,"updated_at":1.0,"history":[]}'
        )
        world.producer.produce(
            changelog, key=o.encode(), value=b"\xff not json", partition=partition
        )
        world.producer.produce(
            changelog, key=b"stranger", value=peeks_but_is_not, partition=partition
        )
        world.producer.flush(10)
        inventory = world.topics["shop.inventory"]
        world.publish(d.reserved(o))
        world.producer.produce(inventory, key=o.encode(), value=b"not avro at all")
        world.producer.flush(10)
        world.start_tracker()
        healthy_saga_completes(world)
        letter, junk = read_all(world.kafka, dlq.dlq_topic(world.source, inventory), 2)
        assert (letter[2][dlq.REASON], junk[2][dlq.REASON]) == (b"unreadable-state", b"not-avro")
        assert o.encode() in letter[2][dlq.ERROR_MESSAGE]
        logs = world.logs()
        assert "1 changelog record(s)" in logs and "not saga states" in logs, logs[-3000:]
        assert "not firing its deadline: saga stranger" in logs, logs[-3000:]
        listed = world.cli("ls", "--saga", world.name)
        assert listed.returncode == 0 and "not a saga state" in listed.stderr, listed.stderr
        assert all(p.poll() is None for p in world.processes[1:])  # still running
        # Recovery as the README says: a valid state written back (here the one the garbage
        # replaced), the tracker restarted, the dead letter replayed; the saga carries on.
        stop(world.processes[-1])
        world.producer.produce(
            changelog, key=o.encode(), value=held[partition][o], partition=partition
        )
        world.producer.flush(10)
        world.start_tracker()
        replay = ["dlq", "replay", dlq.dlq_topic(world.source, inventory)]
        replayed = subprocess.run(
            [sys.executable, "-m", "choreo._cli.main", *replay, "--reason", "unreadable-state"],
            env=world.env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert replayed.returncode == 0, replayed.stderr
        world.wait_step(o, "reserve-stock")
        world.publish(d.authorized(o))
        world.publish(d.completed(o))
        world.wait_status(o, "completed")


def test_finished_sagas_are_shown_then_forgotten(fragile: World) -> None:
    o = oid()
    fragile.publish(d.placed(o))
    fragile.publish(d.reservation_failed(o))
    fragile.wait_status(o, "compensated")
    shown = fragile.cli("show", o, "--saga", fragile.name)
    assert shown.returncode == 0 and "compensated" in shown.stdout, shown.stderr
    fragile.wait(lambda: o not in fragile.states(), timeout=30, what="the tombstone")
    assert fragile.cli("show", o, "--saga", fragile.name).returncode == 1


def test_a_deadline_that_passes_while_the_tracker_is_stopped_fires_on_restart(
    kafka: str, tmp_path: Path
) -> None:
    with World(kafka, tmp_path) as world:
        answer_compensations(world)
        tracker = world.start_tracker()
        o = oid()
        world.publish(d.placed(o))  # reserve-stock has 4 s
        world.wait_status(o, "running")
        stop(tracker)
        time.sleep(d.STOCK_DEADLINE.total_seconds() + 1)
        assert world.commands(o) == []
        world.start_tracker()
        state = world.wait_status(o, "compensated")
        assert state.steps["reserve-stock"].status.value == "timed-out"
        assert world.commands(o) == ["CancelOrder"]


def test_a_saga_whose_version_is_no_longer_loaded_is_forgotten_after_retention(
    kafka: str, tmp_path: Path
) -> None:
    with World(kafka, tmp_path, CHOREO_TEST_SAGA_SLOW="1") as world:  # no deadline may fire
        answer_compensations(world)
        tracker = world.start_tracker(target="saga_defs:fragile_saga")  # v1
        o = oid()
        world.publish(d.placed(o))
        world.publish(d.reserved(o))
        world.wait_step(o, "reserve-stock")
        stop(tracker)
        world.start_tracker(target="saga_defs:fragile_v2")  # v2 only: the saga cannot move
        world.wait(lambda: o not in world.states(), timeout=60, what="the tombstone")
        logs = world.logs()
        assert "1 restored saga(s) cannot move" in logs, logs
        assert f"saga {o} forgotten while running: definition v1 of" in logs, logs
        assert world.commands(o) == []


def read_all(kafka: str, topic: str, count: int) -> list[tuple[bytes, bytes, dict[str, bytes]]]:
    consumer = ck.Consumer(
        {
            "bootstrap.servers": kafka,
            "group.id": f"dlq-reader-{uuid.uuid4().hex}",
            "isolation.level": "read_committed",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.assign([ck.TopicPartition(topic, 0, ck.OFFSET_BEGINNING)])
    found: list[tuple[bytes, bytes, dict[str, bytes]]] = []
    deadline = time.monotonic() + 20
    try:
        while len(found) < count and time.monotonic() < deadline:
            for message in consumer.consume(100, timeout=0.5):
                if message.error() is None:
                    headers = {k: v for k, v in message.headers() or []}
                    found.append((message.key(), message.value(), headers))
    finally:
        consumer.close()
    return found
