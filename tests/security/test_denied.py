"""A principal that oversteps its ACLs: the broker refuses, and choreo stops with a message that
names the topic and the fix instead of retrying."""

from __future__ import annotations

import uuid

import pytest
from conftest import Secured
from test_secured_saga import publish_placed

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
