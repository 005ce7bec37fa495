"""Metrics and probes on the in-memory transport: every fate counted once, probes that tell."""

from __future__ import annotations

import asyncio

import pytest
from builders import placed
from obs_kit import FAST, Spans, http_get, isolated_catalog, publisher, running, samples, value

import choreo
from choreo._errors import ConfigError
from choreo._observability import Metrics, Observability, build_instrumentation
from choreo._observability.fanout import Fanout
from choreo._transport.memory import MemoryTransport
from services.events import OrderPlaced

PREFIX = "mem"
ORDERS = f"{PREFIX}.shop.orders"


def group(name: str) -> str:
    return f"{name}-group"


def test_each_fate_is_counted_and_the_probes_answer_before_and_after_assignment() -> None:
    catalog = isolated_catalog(PREFIX)
    transport = MemoryTransport()
    svc = choreo.Service("counted")
    bulk = choreo.Service("bulk")

    @svc.on(OrderPlaced, retry=FAST)
    def reserve(event: OrderPlaced, ctx: choreo.Context) -> None:
        if event.order_id == "o-bad":
            raise KeyError("no such warehouse")

    @bulk.on_batch(OrderPlaced, max_size=4, max_wait_s=0.05)
    def reserve_all(events: list[OrderPlaced], ctx: choreo.Context) -> None:
        pass

    observability = {
        s.name: Observability(
            s.name, group(s.name), metrics=Metrics(s.name), probes=("127.0.0.1", 0)
        )
        for s in (svc, bulk)
    }

    async def scenario() -> dict[str, dict[str, tuple[int, str]]]:
        seen: dict[str, dict[str, tuple[int, str]]] = {}
        instruments = [observability[s.name].instrument for s in (svc, bulk)]
        async with running([svc, bulk], catalog, transport, instruments, group) as runners:
            for runner in runners:
                observability[runner.service.name].start(runner)
            url = observability["counted"].url
            seen["before"] = {"/readyz": await asyncio.to_thread(http_get, f"{url}/readyz")}
            emitter = publisher(catalog, transport, "web")
            for order in ("o-1", "o-2", "o-bad", "o-3", "o-4"):
                await emitter.publish(placed(order))
            while transport.lag(group("counted")) or transport.lag(group("bulk")):
                await asyncio.sleep(0.01)
            for name, obs in observability.items():
                seen[name] = {
                    path: await asyncio.to_thread(http_get, f"{obs.url}{path}")
                    for path in ("/metrics", "/healthz", "/readyz", "/nope")
                }
        for obs in observability.values():
            obs.close()
        return seen

    seen = asyncio.run(scenario())
    assert seen["before"]["/readyz"][0] == 503  # not assigned yet, or not polled yet
    counted = seen["counted"]
    assert counted["/healthz"] == (200, "ok\n")
    assert counted["/readyz"] == (200, "ready\n")
    assert counted["/nope"][0] == 404
    status, text = counted["/metrics"]
    assert status == 200
    found = samples(text)
    by_type = {"service": "counted", "topic": ORDERS, "event_type": "shop.orders.OrderPlaced"}
    assert value(found, "choreo_messages_consumed_total", service="counted", topic=ORDERS) == 5
    assert value(found, "choreo_messages_handled_total", **by_type) == 4
    assert value(found, "choreo_messages_retried_total", **by_type) == 2
    dead = {"reason": "handler-error", "error_type": "builtins.KeyError"}
    assert value(found, "choreo_messages_dead_lettered_total", **dead) == 1
    durations = "choreo_handler_duration_seconds_count"
    assert value(found, durations, outcome="handled", **by_type) == 4
    assert value(found, durations, outcome="dead_lettered", **by_type) == 1
    assert value(found, "choreo_records_in_flight", service="counted") == 0
    lags = [v for (name, _), v in found.items() if name == "choreo_consumer_lag"]
    assert lags and set(lags) == {0.0}
    bulk_found = samples(seen["bulk"]["/metrics"][1])
    assert value(bulk_found, "choreo_messages_consumed_total") == 5
    assert value(bulk_found, "choreo_messages_handled_total") == 5
    assert value(bulk_found, "choreo_handler_duration_seconds_count", outcome="handled") == 2


def test_lag_is_the_distance_from_the_last_commit_to_the_log_end() -> None:
    catalog = isolated_catalog(PREFIX)
    transport = MemoryTransport()
    svc = choreo.Service("slow")
    release = asyncio.Event()

    calls: list[str] = []

    @svc.on(OrderPlaced)
    async def reserve(event: OrderPlaced, ctx: choreo.Context) -> None:
        calls.append(event.order_id)
        if len(calls) > 1:
            await release.wait()

    metrics = Metrics("slow")

    async def scenario() -> tuple[float, float]:
        emitter = publisher(catalog, transport, "web")
        async with running([svc], catalog, transport, [metrics], group) as [runner]:
            await emitter.publish(placed("o-1"))  # handled and committed
            while not runner.committed():
                await asyncio.sleep(0.01)
            for _ in range(3):  # same key, same partition: stuck behind the one in hand
                await emitter.publish(placed("o-1"))
            await asyncio.sleep(0.05)
            await metrics.refresh(runner)
            found = samples(metrics.render().decode())
            release.set()
        return value(found, "choreo_consumer_lag", service="slow"), value(
            found, "choreo_records_in_flight"
        )

    lag, in_flight = asyncio.run(scenario())
    assert (lag, in_flight) == (3, 3)


def test_tracing_and_metrics_fan_out_behind_one_seam() -> None:
    both = build_instrumentation(
        "svc", tracer_provider=Spans().provider("svc"), metrics=Metrics("s")
    )
    assert isinstance(both, Fanout) and len(both.parts) == 2


def test_choreo_run_serves_metrics_only_when_a_port_is_set(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_TRACES_EXPORTER", "CHOREO_METRICS_PORT"):
        monkeypatch.delenv(name, raising=False)
    off = Observability.from_env("svc", "svc")
    assert off.instrument is None and off.url is None
    assert "metrics    off" in off.describe() and "traces     off" in off.describe()
    monkeypatch.setenv("CHOREO_METRICS_PORT", "9464")
    on = Observability.from_env("svc", "svc")
    assert isinstance(on.instrument, Metrics) and on.url == "http://127.0.0.1:9464"
    assert Observability.from_env("svc", "svc", metrics_host="0.0.0.0").url == "http://0.0.0.0:9464"
    monkeypatch.setenv("CHOREO_METRICS_PORT", "nine")
    with pytest.raises(ConfigError, match="CHOREO_METRICS_PORT"):
        Observability.from_env("svc", "svc")
