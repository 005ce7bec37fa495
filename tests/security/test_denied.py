"""A principal that oversteps its ACLs: the broker refuses, and choreo stops with a message that
names the topic and the fix instead of retrying."""

from __future__ import annotations

import uuid

import pytest
from conftest import Secured
from test_secured_saga import publish_placed

from choreo._schemas import Catalog
from choreo._security.acl import Acl
from choreo._security.acl_admin import AclAdmin

pytestmark = pytest.mark.stack


def _stock_only(secured: Secured) -> str:
    """The stock principal, with exactly the stock service's ACLs."""
    stock = secured.user("stock")
    applied = secured.admin("acl", "apply", "secure_services:stock")
    assert applied.returncode == 0, applied.stderr
    return stock


def test_reading_a_topic_it_does_not_handle_is_refused_and_stops_the_service(
    secured: Secured,
) -> None:
    stock = _stock_only(secured)
    env = {**secured.as_user(stock), "CHOREO_GROUP_ID": f"{secured.prefix}stock"}
    snoop = secured.start("run", "secure_services:snoop", env=env)  # also reads shop.payments
    secured.wait(lambda: snoop.poll() is not None, "the service to stop")
    output = secured.output(snoop)
    assert snoop.returncode == 1
    denied = [line for line in output.splitlines() if line.startswith("choreo: ")]
    assert len(denied) == 1, output
    assert "reading group" in denied[0] and "topic shop.payments." in denied[0]
    assert "not authorized" in denied[0] and "choreo acl apply" in denied[0]
    assert secured.passwords[stock] not in output


def test_writing_another_services_topic_is_refused_and_stops_the_service(
    secured: Secured, kafka: str
) -> None:
    stock = _stock_only(secured)
    env = {**secured.as_user(stock), "CHOREO_GROUP_ID": f"{secured.prefix}stock"}
    rogue = secured.start("run", "secure_services:rogue", env=env)  # emits to shop.payments
    order_id = f"rogue-{uuid.uuid4().hex[:8]}"
    publish_placed(kafka, secured.schemas, order_id)
    secured.wait(lambda: rogue.poll() is not None, "the service to stop")
    output = secured.output(rogue)
    assert rogue.returncode == 1
    denied = [line for line in output.splitlines() if line.startswith("choreo: ")]
    assert len(denied) == 1, output
    assert "writing to topic shop.payments." in denied[0]
    assert "not authorized" in denied[0] and "choreo acl apply" in denied[0]


def test_a_tracker_that_may_not_read_an_input_stops_naming_it(secured: Secured) -> None:
    tracker = secured.user(f"choreo-saga-{secured.saga}")
    applied = secured.admin("acl", "apply", "saga_defs:order_saga")
    assert applied.returncode == 0, applied.stderr
    orders = next(t for t in Catalog.load(secured.schemas).topics if t.startswith("shop.orders."))
    admin = AclAdmin(secured.secure.admin())
    admin.delete([Acl(f"User:{tracker}", "topic", orders, "READ")])  # it still writes there
    process = secured.start("saga", "run", "saga_defs:order_saga", env=secured.as_user(tracker))
    secured.wait(lambda: process.poll() is not None, "the tracker to stop")
    [line] = [x for x in secured.output(process).splitlines() if x.startswith("choreo: ")]
    assert f"reading {orders}" in line and "not authorized" in line, line


def test_a_tracker_without_its_transactional_id_acl_stops_naming_it(secured: Secured) -> None:
    tracker = secured.user(f"choreo-saga-{secured.saga}")
    applied = secured.admin("acl", "apply", "saga_defs:order_saga")
    assert applied.returncode == 0, applied.stderr
    prefix = f"choreo.choreo-saga-{secured.saga}."
    admin = AclAdmin(secured.secure.admin())
    admin.delete([Acl(f"User:{tracker}", "transactional_id", prefix, "WRITE", prefixed=True)])
    process = secured.start(
        "saga", "run", "saga_defs:order_saga", "--instance", "a", env=secured.as_user(tracker)
    )
    secured.wait(lambda: process.poll() is not None, "the tracker to stop")
    output = secured.output(process)
    assert process.returncode == 1 and "Traceback" not in output, output
    [line] = [x for x in output.splitlines() if x.startswith("choreo: ")]
    assert f"starting transactions as {prefix}a" in line, line
    assert f"needs WRITE on transactional_id prefix {prefix}" in line, line
    assert "not authorized" in line and "choreo acl apply" in line, line
