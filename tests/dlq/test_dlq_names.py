"""A DLQ topic's name says whose records it holds and where they go back: it must parse one way
only, so no owner name may hold the dot that separates owner and source topic."""

from __future__ import annotations

import re
import sys
from dataclasses import replace
from pathlib import Path

import pytest

import choreo
from choreo._dlq.naming import DlqName, parse
from choreo._errors import TopologyError, TransportError
from choreo._runtime.dead_letters import dlq_topic
from choreo._saga.topology import tracker_name
from choreo._schemas import Catalog

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "saga"))
import saga_defs  # noqa: E402


@pytest.mark.parametrize(
    ("owner", "source"),
    [("payments", "shop.orders"), ("a-b_c", "x"), ("choreo-saga-order", "shop.orders.v2.eu")],
)
def test_a_dlq_name_parses_back_to_its_owner_and_source(owner: str, source: str) -> None:
    assert parse(dlq_topic(owner, source)) == DlqName(owner, source)


@pytest.mark.parametrize(
    "name", ["shop.orders", "choreo.dlq.", "choreo.dlq.svc", "choreo.dlq..topic", "choreo.dlq.svc."]
)
def test_a_name_that_is_no_dlq_topic_is_an_error_naming_it(name: str) -> None:
    with pytest.raises(TransportError, match=re.escape(f"{name} is not a dead-letter topic")):
        parse(name)


@pytest.mark.parametrize("name", ["pay.ments", "pay ments", "", "pay/ments"])
def test_a_service_name_that_could_make_two_dlq_names_meet_is_refused(name: str) -> None:
    with pytest.raises(TopologyError):
        choreo.Service(name)


def test_a_saga_name_with_a_dot_is_refused() -> None:
    # "a" reading "b.orders" and "a.b" reading "orders" would share one DLQ topic name.
    assert dlq_topic(tracker_name("a"), "b.orders") == dlq_topic(tracker_name("a.b"), "orders")
    dotted = replace(saga_defs.order_saga, name="order.v2")
    expected = re.escape("saga 'order.v2' v1: a saga name is letters")
    with pytest.raises(TopologyError, match=expected):
        dotted.validate(Catalog.load(ROOT / "schemas"))
