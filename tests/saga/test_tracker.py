"""The tracker on the real broker: the tests play the services and watch what it emits."""

from __future__ import annotations

import pytest
import saga_defs as d
from confluent_kafka.admin import AdminClient, ConfigResource
from conftest import World, oid

from choreo import _headers
from choreo._saga.store import changelog_topic
from services.events import SagaFailed

pytestmark = pytest.mark.stack


def test_happy_path(shared: World) -> None:
    o = oid()
    for event in (d.placed(o), d.reserved(o), d.authorized(o), d.completed(o)):
        shared.publish(event)
    state = shared.wait_status(o, "completed")
    assert state.steps["approval"].status.value == "skipped"
    assert shared.commands(o) == []


@pytest.mark.parametrize(
    ("total", "script", "expected"),
    [
        ("10", ["reservation_failed"], ["CancelOrder"]),
        ("10", ["reserved", "declined"], ["ReleaseStock", "CancelOrder"]),
        (
            "5000",
            ["reserved", "authorized", "rejected"],
            ["RefundPayment", "ReleaseStock", "CancelOrder"],
        ),
    ],
    ids=["stock-fails", "payment-declined", "approval-rejected"],
)
def test_failure_at_each_step_compensates_in_reverse(
    shared: World, total: str, script: list[str], expected: list[str]
) -> None:
    o = oid()
    start_id = shared.publish(
        d.placed(o, total=total), headers={"traceparent": "00-" + "a" * 32 + "-" + "b" * 16 + "-01"}
    )
    last = ""
    for name in script:
        last = shared.publish(getattr(d, name)(o))
    shared.wait_status(o, "compensated")
    assert shared.commands(o) == expected
    for seen in shared.emitted[o]:
        assert seen.headers[_headers.CORRELATION] == o
        assert seen.headers[_headers.CAUSATION] == last
        assert seen.headers["traceparent"].startswith("00-aaaa")
        assert "failed" in getattr(seen.event, "reason", "")
    assert start_id != last


def test_step_deadline_compensates(shared: World) -> None:
    o = oid()
    start_id = shared.publish(d.placed(o))  # no StockReserved within 4 s
    state = shared.wait_status(o, "compensated", timeout=15)
    assert shared.commands(o) == ["CancelOrder"]
    assert shared.emitted[o][0].headers[_headers.CAUSATION] == start_id
    assert state.steps["reserve-stock"].status.value == "timed-out"


def test_out_of_order_events(shared: World) -> None:
    o = oid()
    shared.publish(d.declined(o))  # before the start and before the stock reply
    shared.publish(d.placed(o))
    shared.wait_status(o, "compensated")
    shared.publish(d.reserved(o))  # an earlier step's success after everything was undone
    shared.wait(lambda: shared.commands(o) == ["CancelOrder", "ReleaseStock"], what="release")
    shared.wait_status(o, "compensated")


def test_duplicates_are_ignored(shared: World) -> None:
    o = oid()
    start = shared.publish(d.placed(o))
    shared.publish(d.placed(o), event_id=start)
    failure = shared.publish(d.reservation_failed(o))
    shared.publish(d.reservation_failed(o), event_id=failure)
    shared.wait_status(o, "compensated")
    shared.publish(d.cancelled(o))  # a second confirmation changes nothing
    shared.publish(d.reservation_failed(o), event_id=failure)
    probe = oid()
    shared.publish(d.placed(probe))
    shared.publish(d.reservation_failed(probe))
    shared.wait_status(probe, "compensated")  # everything before it was processed
    assert shared.commands(o) == ["CancelOrder"]


def test_approval_granted(shared: World) -> None:
    o = oid()
    for event in (
        d.placed(o, "5000"),
        d.reserved(o),
        d.authorized(o),
        d.approved(o),
        d.completed(o),
    ):
        shared.publish(event)
    shared.wait_status(o, "completed")
    assert shared.commands(o) == []


def test_approval_timed_out(shared: World) -> None:
    o = oid()
    for event in (d.placed(o, "5000"), d.reserved(o), d.authorized(o)):
        shared.publish(event)
    state = shared.wait_status(o, "compensated", timeout=15)
    assert state.steps["approval"].status.value == "timed-out"
    assert shared.commands(o) == ["RefundPayment", "ReleaseStock", "CancelOrder"]


def test_unconfirmed_compensation_is_retried_then_parked(shared: World) -> None:
    o = oid("park")
    shared.publish(d.placed(o))
    shared.publish(d.reservation_failed(o))
    state = shared.wait_status(o, "failed", timeout=15)
    # The state is read from the changelog, the events by another consumer: it may lag.
    shared.wait(lambda: len(shared.commands(o)) >= 3, what="the parked event")
    assert shared.commands(o) == ["CancelOrder", "CancelOrder", "SagaFailed"]
    parked = shared.emitted[o][-1].event
    assert isinstance(parked, SagaFailed)
    assert parked.step == "order" and parked.saga_id == o
    assert state.steps["order"].attempts == 2
    assert f"saga '{shared.name}' {o} parked" in shared.logs()


def test_cli_lists_and_shows(shared: World) -> None:
    o = oid()
    shared.publish(d.placed(o))
    shared.publish(d.reservation_failed(o))
    shared.wait_status(o, "compensated")
    listing = shared.cli("ls", "--saga", shared.name, "--state", "compensated")
    assert listing.returncode == 0, listing.stderr
    assert o in listing.stdout and "step 'reserve-stock' failed" in listing.stdout
    shown = shared.cli("show", o, "--saga", shared.name)
    assert shown.returncode == 0, shown.stderr
    for text in (
        "started under v1",
        "emitted shop.orders.CancelOrder",
        "compensation confirmed",
        "reserve-stock",
    ):
        assert text in shown.stdout
    assert shared.cli("show", "nope", "--saga", shared.name).returncode == 1


def test_a_customer_cancel_undoes_what_succeeded_and_names_who_asked(shared: World) -> None:
    """Who asked: the event's ``requested_by``, else its ``ce_source`` header as a foreign
    client wrote it (bytes that are not UTF-8 keep their readable part, and stop nothing)."""
    orders = {oid(): ("c-7", None), oid(): ("", "support-desk"), oid(): ("", b"desk-\xff")}
    for o, (by, source) in orders.items():
        for event in (d.placed(o), d.reserved(o), d.authorized(o)):
            shared.publish(event)
        shared.wait_step(o, "charge")
        shared.publish(
            d.cancel_requested(o, by),
            headers={} if source is None else {_headers.SOURCE: source},
        )
    expected = {"c-7", "support-desk", "desk-\ufffd"}
    cancels = [shared.wait_status(o, "compensated").cancel for o in orders]
    assert {c.by for c in cancels if c is not None and c.applied} == expected
    for o in orders:
        assert shared.commands(o) == ["RefundPayment", "ReleaseStock", "CancelOrder"]
        assert all("cancelled by" in getattr(s.event, "reason", "") for s in shared.emitted[o])


def test_a_cancel_after_completion_is_reported_not_applied(shared: World) -> None:
    o = oid()
    for event in (d.placed(o), d.reserved(o), d.authorized(o), d.completed(o)):
        shared.publish(event)
    shared.wait_status(o, "completed")
    shared.publish(d.cancel_requested(o))
    shared.wait(lambda: shared.states()[o].cancel is not None, what="the cancel recorded")
    state = shared.states()[o]
    assert state.status.value == "completed" and state.cancel is not None
    assert not state.cancel.applied and shared.commands(o) == []
    assert f"{o}: cancel requested by c-1 (changed my mind) arrived after" in shared.logs()
    shown = shared.cli("show", o, "--saga", shared.name)
    assert "NOT applied: the saga had completed" in shown.stdout


def test_the_changelog_is_compacted_and_rolls_hourly(shared: World) -> None:
    """Kafka never compacts the active segment (by default 7 days or 1 GB): a restarting
    tracker would re-read every superseded state written since it rolled."""
    saga_id = oid()
    shared.publish(d.placed(saga_id))
    shared.wait_status(saga_id, "running")
    topic = changelog_topic(shared.name)
    resource = ConfigResource(ConfigResource.Type.TOPIC, topic)
    admin = AdminClient({"bootstrap.servers": shared.kafka})
    configs = admin.describe_configs([resource])[resource].result(30)
    assert configs["cleanup.policy"].value == "compact"
    assert configs["segment.ms"].value == str(60 * 60 * 1000)
