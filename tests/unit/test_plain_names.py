"""Names that become Kafka topic, group and transactional-id parts: exactly what Kafka's own
topic names allow, less the ``.`` choreo uses as a separator. ``str.isalnum`` alone took
``café`` and ``订单``, which passed here and failed later at the broker, far from the cause."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from choreo import Service
from choreo._config import is_plain_name
from choreo._errors import TopologyError

PLAIN = re.compile(r"[A-Za-z0-9_-]*[A-Za-z0-9][A-Za-z0-9_-]*")
"""At least one letter or digit: ``-`` or ``__`` alone names nothing."""
names = st.one_of(st.text(), st.from_regex(PLAIN, fullmatch=True))


@given(names)
def test_a_plain_name_is_what_a_kafka_topic_name_allows_but_the_dot(name: str) -> None:
    assert is_plain_name(name) is bool(PLAIN.fullmatch(name))


@given(names)
def test_a_service_refuses_exactly_the_names_that_are_not_plain(name: str) -> None:
    if PLAIN.fullmatch(name):
        assert Service(name).name == name
    else:
        with pytest.raises(TopologyError, match="ASCII letters, digits"):
            Service(name)


@pytest.mark.parametrize("name", ["café", "订单", "orders.v2", "", "a b", "x\u0660", "-", "__"])
def test_the_names_that_used_to_slip_through_are_refused_by_name(name: str) -> None:
    with pytest.raises(TopologyError, match=re.escape(repr(name))):
        Service(name)
