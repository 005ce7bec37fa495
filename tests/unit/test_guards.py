"""Circuit breaker and rate limit: the partition waits instead of overwhelming a downstream."""

from __future__ import annotations

import time

from builders import placed

import choreo
from choreo.testing import TestService
from services.events import OrderPlaced


def test_an_open_breaker_stops_calls_until_a_half_open_probe_succeeds() -> None:
    breaker = choreo.CircuitBreaker(
        "carrier", failure_rate=1.0, window=4, min_calls=2, cool_down_s=0.3
    )
    svc = choreo.Service("shipping")
    calls: list[tuple[str, float]] = []
    failing = 2  # the carrier's API fails the first two calls, whenever they come

    @svc.on(
        OrderPlaced,
        retry=choreo.RetryPolicy(max_attempts=10, initial_interval_s=0.001),
        guards=[breaker],
    )
    def ship(event: OrderPlaced, ctx: choreo.Context) -> None:
        calls.append((event.order_id, time.monotonic()))
        if len(calls) <= failing:
            raise ConnectionError("carrier API down")

    with TestService(svc, raise_errors=False) as t:
        for i in range(3):
            t.send(placed(f"o-{i}"), settle=False)
        t.settle()
        assert t.dead_letters("shop.orders") == []
    times = [at for _, at in calls]
    assert [order for order, _ in calls[:2]] == ["o-0", "o-0"]  # min_calls failures opened it
    assert times[2] - times[1] >= 0.3  # the probe came after the cool-down, no try burnt before
    assert [order for order, _ in calls[2:]] == ["o-0", "o-1", "o-2"]  # closed again: all flow
    assert breaker.state == "closed"


def test_a_rate_limit_spaces_calls_by_pausing_not_failing() -> None:
    limit = choreo.RateLimit(calls=4, per_s=0.25)
    svc = choreo.Service("mailer")
    calls: list[float] = []

    @svc.on(OrderPlaced, guards=[limit])
    def mail(event: OrderPlaced, ctx: choreo.Context) -> None:
        calls.append(time.monotonic())

    with TestService(svc) as t:
        for i in range(10):
            t.send(placed(f"o-{i}"), settle=False)
        t.settle()
    assert len(calls) == 10
    # Never 5 calls within one window. The handler reads the clock a few microseconds after the
    # limiter admitted it, by a different few each call: 1 ms of slack for that, not for speed.
    for i in range(len(calls) - 4):
        assert calls[i + 4] - calls[i] >= 0.25 - 0.001
