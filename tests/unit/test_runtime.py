"""The runtime's message fates on the in-memory transport: handled, retried, or dead-lettered."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

import pytest
from builders import placed, received

import choreo
from choreo import _headers
from choreo._runtime import dead_letters as dlq
from choreo._runtime.dispatch import HandlerFailed
from choreo._schemas import Codec
from choreo._transport.base import Record
from choreo.testing import TestService
from services.events import OrderPlaced, OrderReceived, StockReserved

FAST = choreo.RetryPolicy(max_attempts=3, initial_interval_s=0.001, jitter=0.0)


def _header(record: Record, name: str) -> str:
    value = record.header(name)
    assert value is not None, f"no {name} header"
    return value.decode()


def test_emitted_events_carry_correlation_and_causation() -> None:
    svc = choreo.Service("placer")

    @svc.on(OrderReceived)
    async def place(event: OrderReceived, ctx: choreo.Context) -> None:
        ctx.emit(placed(event.order_id))

    with TestService(svc) as t:
        event_id = t.send(received("o-1"), correlation_id="saga-42")
        [record] = [r for r in t.records("shop.orders") if r.header(_headers.SOURCE) == b"placer"]
    assert _header(record, _headers.TYPE) == "shop.orders.OrderPlaced"
    assert _header(record, _headers.CORRELATION) == "saga-42"
    assert _header(record, _headers.CAUSATION) == event_id
    assert record.key == b"o-1"


def test_a_flaky_handler_succeeds_after_retries_and_emits_once() -> None:
    svc = choreo.Service("flaky")
    calls: list[int] = []

    @svc.on(OrderPlaced, retry=FAST)
    def reserve(event: OrderPlaced, ctx: choreo.Context) -> None:
        calls.append(ctx.attempt)
        if ctx.attempt < 3:
            raise ConnectionError("warehouse API timed out")

    with TestService(svc, raise_errors=False) as t:
        t.send(placed("o-1"))
        assert t.dead_letters("shop.orders") == []
    assert calls == [1, 2, 3]


def test_events_emitted_by_a_failed_try_are_never_published() -> None:
    svc = choreo.Service("leaky")

    @svc.on(OrderPlaced, retry=FAST)
    def reserve(event: OrderPlaced, ctx: choreo.Context) -> None:
        ctx.emit(
            StockReserved(
                order_id=event.order_id,
                reservation_id=uuid.UUID(int=ctx.attempt),
                items=[],
                reserved_at=event.placed_at,
                expires_at=event.placed_at,
            )
        )
        if ctx.attempt == 1:
            raise ConnectionError("boom")

    with TestService(svc, raise_errors=False) as t:
        t.send(placed("o-1"))
        emitted = t.emitted(StockReserved)
    assert [e.reservation_id.int for e in emitted] == [2]


def test_a_handler_that_keeps_failing_is_dead_lettered_with_the_reason() -> None:
    svc = choreo.Service("broken")

    @svc.on(OrderPlaced, retry=FAST)
    def reserve(event: OrderPlaced, ctx: choreo.Context) -> None:
        raise ValueError(f"cannot reserve {event.order_id}")

    with TestService(svc, raise_errors=False) as t:
        t.send(placed("o-9"))
        [original] = [r for r in t.records("shop.orders")]
        [parked] = t.dead_letters("shop.orders")
    assert parked.value == original.value and parked.key == original.key
    assert _header(parked, dlq.REASON) == "handler-error"
    assert _header(parked, dlq.ERROR_TYPE) == "builtins.ValueError"
    assert _header(parked, dlq.ERROR_MESSAGE) == "cannot reserve o-9"
    assert _header(parked, dlq.ATTEMPTS) == "3"
    assert _header(parked, dlq.TOPIC) == "shop.orders"
    assert _header(parked, dlq.OFFSET) == str(original.offset)
    assert _header(parked, dlq.GROUP) == "broken"
    assert "ValueError" in _header(parked, dlq.STACKTRACE)
    assert _header(parked, _headers.ID) == _header(original, _headers.ID)


def test_a_non_retryable_error_is_parked_at_once() -> None:
    svc = choreo.Service("strict")
    calls: list[int] = []
    policy = choreo.RetryPolicy(max_attempts=5, initial_interval_s=0.001, non_retryable=(KeyError,))

    @svc.on(OrderPlaced, retry=policy)
    def reserve(event: OrderPlaced, ctx: choreo.Context) -> None:
        calls.append(ctx.attempt)
        raise KeyError("unknown sku")

    with TestService(svc, raise_errors=False) as t:
        t.send(placed())
        [parked] = t.dead_letters("shop.orders")
    assert calls == [1]
    assert _header(parked, dlq.ATTEMPTS) == "1"


@pytest.mark.parametrize(
    ("value", "headers", "reason"),
    [
        (b"definitely not avro", [(_headers.TYPE, b"shop.orders.OrderPlaced")], "not-avro"),
        (
            b"\xc3\x01" + bytes(8) + b"\x02",
            [(_headers.TYPE, b"shop.orders.OrderPlaced")],
            "unknown-fingerprint",
        ),
        (None, [(_headers.TYPE, b"shop.orders.OrderPlaced")], "tombstone"),
        (b"garbage without a type header", [], "not-avro"),
    ],
)
def test_poison_messages_are_parked_with_a_reason_and_the_stream_goes_on(
    value: bytes | None, headers: list[tuple[str, bytes]], reason: str
) -> None:
    svc = choreo.Service("sturdy")
    handled: list[str] = []

    @svc.on(OrderPlaced)
    def reserve(event: OrderPlaced, ctx: choreo.Context) -> None:
        handled.append(event.order_id)

    with TestService(svc, raise_errors=False) as t:
        t.send_raw("shop.orders", value, key=b"o-1", headers=headers)
        t.send(placed("o-2"))
        [parked] = t.dead_letters("shop.orders")
    assert _header(parked, dlq.REASON) == reason
    assert handled == ["o-2"]


def test_a_truncated_body_is_parked_as_truncated() -> None:
    svc = choreo.Service("cutter")

    @svc.on(OrderPlaced)
    def reserve(event: OrderPlaced, ctx: choreo.Context) -> None:
        pass

    with TestService(svc, raise_errors=False) as t:
        t.send(placed("o-1"))
        whole = t.records("shop.orders")[0]
        t.send_raw("shop.orders", (whole.value or b"")[:-20], key=b"o-1", headers=whole.headers)
        [parked] = t.dead_letters("shop.orders")
    assert _header(parked, dlq.REASON) == "truncated"


def test_events_the_service_does_not_handle_are_skipped_not_parked() -> None:
    svc = choreo.Service("picky")
    handled: list[str] = []

    @svc.on(OrderPlaced)
    def reserve(event: OrderPlaced, ctx: choreo.Context) -> None:
        handled.append(event.order_id)

    with TestService(svc) as t:
        t.send(received("o-1"))  # same topic, other type
        t.send(placed("o-2"))
        assert t.dead_letters("shop.orders") == []
    assert handled == ["o-2"]


def test_handler_errors_surface_in_tests_by_default() -> None:
    svc = choreo.Service("loud")

    @svc.on(OrderPlaced, retry=FAST)
    def reserve(event: OrderPlaced, ctx: choreo.Context) -> None:
        raise RuntimeError("bug in handler")

    with pytest.raises(HandlerFailed, match="bug in handler"), TestService(svc) as t:
        t.send(placed())


def test_batch_handlers_get_lists_in_partition_order() -> None:
    svc = choreo.Service("bulk")
    batches: list[list[str]] = []

    @svc.on_batch(OrderPlaced, max_size=3, max_wait_s=0.05)
    def load(events: list[OrderPlaced], ctx: choreo.Context) -> None:
        batches.append([e.order_id for e in events])

    with TestService(svc) as t:
        for i in range(7):
            t.send(placed("same-key-" + "x", sku=f"SKU-{i}"))
    assert sum(len(b) for b in batches) == 7
    assert all(1 <= len(b) <= 3 for b in batches)


def test_a_handler_for_an_event_no_topic_carries_fails_at_start() -> None:
    class Orphan(choreo.Event):
        event_type = "shop.nowhere.Orphan"
        order_id: str

    svc = choreo.Service("lost")

    @svc.on(Orphan)
    def handle(event: Orphan, ctx: choreo.Context) -> None:
        pass

    with pytest.raises(choreo.TopologyError, match=r"lost: handler .*handle takes shop.nowhere"):
        TestService(svc).__enter__()


def test_a_model_that_does_not_match_its_schema_fails_at_start() -> None:
    class OrderPlacedDrifted(choreo.Event):
        event_type = "shop.orders.OrderPlaced"
        order_id: str
        discount_code: str

    svc = choreo.Service("drifted")

    @svc.on(OrderPlacedDrifted)
    def handle(event: OrderPlacedDrifted, ctx: choreo.Context) -> None:
        pass

    with pytest.raises(choreo.SchemaError, match=r"discount_code|customer_id"):
        TestService(svc).__enter__()


def test_two_handlers_for_one_event_in_a_service_is_an_error() -> None:
    svc = choreo.Service("twice")

    @svc.on(OrderPlaced)
    def first(event: OrderPlaced, ctx: choreo.Context) -> None:
        pass

    with pytest.raises(choreo.TopologyError, match=r"two handlers for shop\.orders\.OrderPlaced"):

        @svc.on(OrderPlaced)
        def second(event: OrderPlaced, ctx: choreo.Context) -> None:
            pass


def test_delayed_retries_wait_their_delay_without_blocking_the_partition() -> None:
    svc = choreo.Service("patient")
    tries: list[tuple[str, int]] = []
    policy = choreo.RetryPolicy(max_attempts=1, delays_s=(20.0, 40.0))

    @svc.on(OrderPlaced, retry=policy)
    def reserve(event: OrderPlaced, ctx: choreo.Context) -> None:
        tries.append((event.order_id, ctx.attempt))
        if event.order_id == "slow" and ctx.attempt < 3:
            raise ConnectionError("carrier API down")

    with TestService(svc, raise_errors=False) as t:
        t.send(placed("slow"), settle=False)
        for i in range(5):
            t.send(placed(f"fast-{i}"), settle=False)
        t.settle()
        # The other orders did not wait for the retries.
        assert tries == [("slow", 1)] + [(f"fast-{i}", 1) for i in range(5)]
        t.advance(timedelta(seconds=19))
        assert tries[6:] == []
        t.advance(timedelta(seconds=1))
        assert tries[6:] == [("slow", 2)]
        t.advance(timedelta(seconds=39))
        assert tries[7:] == []
        t.advance(timedelta(seconds=1))
        assert tries[7:] == [("slow", 3)]
        assert t.dead_letters("shop.orders") == []


def test_one_advance_handles_every_retry_level_falling_due_within_it_in_turn() -> None:
    svc = choreo.Service("stubborn")
    tries: list[int] = []

    @svc.on(OrderPlaced, retry=choreo.RetryPolicy(max_attempts=1, delays_s=(2.0, 10.0)))
    def reserve(event: OrderPlaced, ctx: choreo.Context) -> None:
        tries.append(ctx.attempt)
        raise ConnectionError(f"down on try {ctx.attempt}")

    with TestService(svc, raise_errors=False) as t:
        t.send(placed("o-1"))
        assert (tries, t.dead_letters("shop.orders")) == ([1], [])
        t.advance(timedelta(seconds=12.5))  # the second delay starts after the first try
        [parked] = t.dead_letters("shop.orders")
    assert tries == [1, 2, 3]
    assert _header(parked, dlq.ERROR_MESSAGE) == "down on try 3"


def test_a_record_that_fails_every_delayed_retry_is_parked_under_its_source_topic() -> None:
    svc = choreo.Service("hopeless")
    policy = choreo.RetryPolicy(max_attempts=2, initial_interval_s=0.001, delays_s=(5.0,))

    @svc.on(OrderPlaced, retry=policy)
    def reserve(event: OrderPlaced, ctx: choreo.Context) -> None:
        raise ConnectionError(f"down on try {ctx.attempt}")

    with TestService(svc, raise_errors=False) as t:
        t.send(placed("o-1"))
        t.advance(timedelta(seconds=5))
        [original] = t.records("shop.orders")
        [parked] = t.dead_letters("shop.orders")
        [retried] = t.records("choreo.retry.hopeless.shop.orders.1")
    assert _header(parked, dlq.ATTEMPTS) == "3"
    assert _header(parked, dlq.ERROR_MESSAGE) == "down on try 3"
    assert _header(parked, dlq.TOPIC) == "shop.orders"
    assert _header(parked, dlq.OFFSET) == str(original.offset)
    assert _header(retried, "choreo_retry_attempts") == "2"
    assert _header(retried, "choreo_retry_last_error") == "ConnectionError: down on try 2"
    assert _header(retried, _headers.ID) == _header(original, _headers.ID)


def test_retries_and_dead_letters_keep_every_header_byte_for_byte() -> None:
    """Binary and non-UTF-8 header values of the record survive a retry topic and the DLQ;
    only the error text choreo adds is scrubbed."""
    svc = choreo.Service("exact")
    policy = choreo.RetryPolicy(max_attempts=1, delays_s=(5.0,))

    @svc.on(OrderPlaced, retry=policy)
    def reserve(event: OrderPlaced, ctx: choreo.Context) -> None:
        raise ConnectionError("still down")

    event_id = str(uuid.uuid4())
    own = [
        *_headers.event_headers(OrderPlaced.event_type.encode(), b"web", event_id, event_id, None),
        ("x-binary", b"\xff\xfe\x00\x80"),
        ("x-latin1", "caf\xe9".encode("latin-1")),
        ("x-empty", b""),
    ]
    with TestService(svc, raise_errors=False) as t:
        t.send_raw("shop.orders", Codec(t.catalog).encode(placed("o-1")), key=b"o-1", headers=own)
        t.advance(timedelta(seconds=5))
        [retried] = t.records("choreo.retry.exact.shop.orders.1")
        [parked] = t.dead_letters("shop.orders")
    assert retried.headers[: len(own)] == own
    assert parked.headers[: len(own)] == own


def test_a_record_too_big_to_write_again_skips_the_retry_topics_and_is_parked_cut() -> None:
    """Just under the consume limit, it decodes; a retry record (value plus retry headers)
    would be over the produce limit, so it goes to the DLQ, value cut and size recorded."""
    svc = choreo.Service("heavy")

    @svc.on(OrderPlaced, retry=choreo.RetryPolicy(max_attempts=1, delays_s=(5.0,)))
    def reserve(event: OrderPlaced, ctx: choreo.Context) -> None:
        raise ConnectionError("still down")

    big = placed("o-1").model_copy(update={"customer_id": "c" * 1_040_000})
    with TestService(svc, raise_errors=False) as t:
        t.send(big)
        [original] = t.records("shop.orders")
        [parked] = t.dead_letters("shop.orders")
        assert t.records("choreo.retry.heavy.shop.orders.1") == []
    assert original.value is not None and parked.value is not None
    assert _header(parked, dlq.VALUE_BYTES) == str(len(original.value))
    assert original.value.startswith(parked.value) and len(parked.value) < dlq.MAX_BYTES


def test_key_lanes_handle_keys_of_one_partition_concurrently_and_each_key_in_order() -> None:
    svc = choreo.Service("lanes")
    running: dict[int, int] = {}
    peak: dict[int, int] = {}
    seen: list[tuple[str, str]] = []

    @svc.on(OrderPlaced)
    async def slow(event: OrderPlaced, ctx: choreo.Context) -> None:
        assert ctx.record is not None
        partition = ctx.record.partition
        running[partition] = running.get(partition, 0) + 1
        peak[partition] = max(peak.get(partition, 0), running[partition])
        await asyncio.sleep(0.05)
        seen.append((event.order_id, event.items[0].sku))
        running[partition] -= 1

    config = choreo.ServiceConfig(key_concurrency=8)
    with TestService(svc, config=config) as t:
        for round_ in range(3):
            for key in range(12):
                t.send(placed(f"k-{key}", sku=f"SKU-{round_}"), settle=False)
        t.settle()
        committed_all = t.transport.lag(svc.name) == 0
    assert len(seen) == 36 and committed_all
    assert max(peak.values()) > 1  # several keys of one partition at once
    for key in range(12):
        assert [sku for order, sku in seen if order == f"k-{key}"] == ["SKU-0", "SKU-1", "SKU-2"]


def test_key_lanes_refuse_batch_handlers() -> None:
    svc = choreo.Service("lanes-batch")

    @svc.on_batch(OrderPlaced)
    def load(events: list[OrderPlaced], ctx: choreo.Context) -> None:
        pass

    with pytest.raises(choreo.TopologyError, match="key_concurrency"):
        TestService(svc, config=choreo.ServiceConfig(key_concurrency=4)).__enter__()


def test_an_event_that_cannot_be_emitted_is_a_handler_error_not_a_crash() -> None:
    class Unrouted(choreo.Event):
        event_type = "shop.nowhere.Unrouted"
        order_id: str

    svc = choreo.Service("misrouted")
    handled: list[str] = []

    @svc.on(OrderPlaced, retry=FAST)
    def reserve(event: OrderPlaced, ctx: choreo.Context) -> None:
        if event.order_id == "bad":
            ctx.emit(Unrouted(order_id=event.order_id))
        handled.append(event.order_id)

    with TestService(svc, raise_errors=False) as t:
        t.send(placed("bad"))
        t.send(placed("good"))
        [parked] = t.dead_letters("shop.orders")
    assert _header(parked, dlq.ERROR_TYPE) == "choreo._errors.TopologyError"
    assert "shop.nowhere.Unrouted" in _header(parked, dlq.ERROR_MESSAGE)
    assert handled == ["bad", "bad", "bad", "good"]


def test_a_failing_handler_in_a_key_lane_surfaces_instead_of_stalling_the_partition() -> None:
    svc = choreo.Service("lane-error")

    @svc.on(OrderPlaced, retry=FAST)
    async def broken(event: OrderPlaced, ctx: choreo.Context) -> None:
        raise RuntimeError("lane bug")

    with (
        pytest.raises(HandlerFailed, match="lane bug"),
        TestService(svc, config=choreo.ServiceConfig(key_concurrency=4)) as t,
    ):
        t.send(placed("o-1"))


def test_a_topic_handler_gets_its_delayed_retries_too() -> None:
    svc = choreo.Service("raw-retry")
    tries: list[int] = []

    def raw(record: Record) -> bytes:
        return record.value or b""

    @svc.on_topic("raw.things", raw, retry=choreo.RetryPolicy(max_attempts=1, delays_s=(5.0,)))
    def handle(value: bytes, ctx: choreo.Context) -> None:
        tries.append(ctx.attempt)
        if ctx.attempt == 1:
            raise ConnectionError("once")

    with TestService(svc, raise_errors=False) as t:
        t.send_raw("raw.things", b"payload", key=b"k")
        t.advance(timedelta(seconds=5))
        assert t.dead_letters("raw.things") == []
    assert tries == [1, 2]


def test_a_header_with_a_null_value_counts_as_absent_not_as_a_bad_header() -> None:
    """Debezium's outbox router writes a NULL column (here: no causation id) as a null header."""
    svc = choreo.Service("nulls")
    seen: list[str | None] = []

    @svc.on(OrderPlaced)
    def take(event: OrderPlaced, ctx: choreo.Context) -> None:
        seen.append(ctx.causation_id)

    with TestService(svc, raise_errors=False) as t:
        headers = [
            *_headers.event_headers(b"shop.orders.OrderPlaced", b"relay", "e-1", "c-1", None),
            (_headers.CAUSATION, None),
        ]
        topic = t.catalog.topic_of(OrderPlaced.event_type).name
        t.send_raw(topic, Codec(t.catalog).encode(placed("o-null")), headers=headers)
        assert t.dead_letters(topic) == []
    assert seen == [None]
