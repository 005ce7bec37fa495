"""A group's coordinator loading or moving (a broker just started, a leader moved) answers
describe-group requests with a retriable error for a few seconds: choreo asks again instead of
refusing to start the service, and still gives up, naming what it asked, when it never answers."""

from __future__ import annotations

import asyncio
import time

import pytest

from choreo._errors import TransportError
from choreo._transport.shared import CoordinatorMoving, while_coordinator_moves


class Answering:
    """Fails with ``error`` ``failures`` times, then answers."""

    def __init__(self, failures: int, error: TransportError) -> None:
        self.failures = failures
        self.error = error
        self.calls = 0

    async def __call__(self) -> list[str]:
        self.calls += 1
        if self.calls <= self.failures:
            raise self.error
        return ["member-1"]


def test_a_loading_coordinator_is_asked_again_until_it_answers() -> None:
    call = Answering(3, CoordinatorMoving("Broker: Coordinator load in progress"))
    assert asyncio.run(while_coordinator_moves(call, "describe g")) == ["member-1"]
    assert call.calls == 4


def test_any_other_error_is_not_retried() -> None:
    call = Answering(1, TransportError("describe g: Broker: Group authorization failed"))
    with pytest.raises(TransportError, match="authorization") as raised:
        asyncio.run(while_coordinator_moves(call, "describe g"))
    assert not isinstance(raised.value, CoordinatorMoving)
    assert call.calls == 1


def test_a_coordinator_that_never_answers_is_given_up_on_naming_the_request() -> None:
    call = Answering(10**6, CoordinatorMoving("Broker: Coordinator not available"))
    began = time.monotonic()
    with pytest.raises(TransportError, match=r"describe g: .*not available \(still, after 1s\)"):
        asyncio.run(while_coordinator_moves(call, "describe g", wait_s=1.0))
    assert time.monotonic() - began < 10, "the wait is bounded"
    assert 2 <= call.calls <= 5, "backing off, not spinning"
