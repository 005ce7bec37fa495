"""Sub-sagas and versions on the real broker: the composed order saga's tracker at work."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import saga_defs as d
from conftest import World, answer_compensations, oid, stop, tracked

pytestmark = pytest.mark.stack


@pytest.fixture(scope="module")
def composed(kafka: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    with tracked(kafka, tmp_path_factory.mktemp("composed"), "saga_defs:composed_saga") as world:
        yield world


def test_a_failing_sub_saga_compensates_what_was_done(composed: World) -> None:
    o = oid()
    composed.publish(d.placed(o))
    composed.publish(d.reserved(o))
    composed.wait_step(o, "fulfilment/reserve-stock")
    composed.publish(d.declined(o))
    state = composed.wait_status(o, "compensated")
    assert composed.commands(o) == ["ReleaseStock", "CancelOrder"]
    assert state.steps["fulfilment"].status.value == "failed"
    assert state.reason == "step 'fulfilment/charge' failed (shop.payments.PaymentDeclined)"


def test_the_outer_saga_undoes_a_completed_sub_saga_in_reverse(composed: World) -> None:
    o = oid()
    for event in (d.placed(o, "5000"), d.reserved(o), d.authorized(o)):
        composed.publish(event)
    composed.wait_step(o, "fulfilment")
    composed.publish(d.rejected(o))
    state = composed.wait_status(o, "compensated")
    assert composed.commands(o) == ["RefundPayment", "ReleaseStock", "CancelOrder"]
    assert state.steps["fulfilment"].status.value == "compensated"
    shown = composed.cli("show", o, "--saga", composed.name)
    assert shown.returncode == 0, shown.stderr
    assert "started under v3 (sub-sagas fulfilment v1)" in shown.stdout
    assert re.search(r"fulfilment +compensated \(sub-saga v1\)", shown.stdout)
    assert "[fulfilment/charge] emitted shop.payments.RefundPayment" in shown.stdout
    # Each event's own time (ce_time) beside the time the tracker handled it.
    stamp = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}"
    assert re.search(rf"{stamp}  {stamp}  shop\.approvals\.OrderRejected", shown.stdout)


def test_in_flight_sagas_finish_under_the_version_they_started_with(
    kafka: str, tmp_path: Path
) -> None:
    with World(kafka, tmp_path, CHOREO_TEST_SAGA_SLOW="1") as world:  # no deadline may fire
        answer_compensations(world)
        old = oid()
        tracker = world.start_tracker(target="saga_defs:composed_saga")  # v3 only
        world.publish(d.placed(old, "5000"))
        world.publish(d.reserved(old))
        world.wait_status(old, "running")
        stop(tracker)
        world.start_tracker(target="saga_defs:composed_versions")  # v3 and v4
        new = oid()
        world.publish(d.placed(new, "5000"))
        for event in (d.authorized(old), d.reserved(new), d.authorized(new), d.completed(new)):
            world.publish(event)
        fresh = world.wait_status(new, "completed")  # v4 has no approval step
        assert (fresh.version, fresh.sub_versions) == (4, {"fulfilment": 2})
        world.publish(d.completed(old))
        world.publish(d.approved(old))  # v3 still waits for the approval of a big order
        kept = world.wait_status(old, "completed")
        assert (kept.version, kept.sub_versions) == (3, {"fulfilment": 1})
        assert kept.steps["approval"].status.value == "succeeded"
        assert world.commands(old) == [] and world.commands(new) == []
