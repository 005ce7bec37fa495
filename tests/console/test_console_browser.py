"""``choreo console`` in a real headless Chromium, over the real stack, with real sagas.

Three services run in-process on choreo's runtime (orders, inventory, payments), traced into
the real Jaeger, with the saga tracker in a thread; a plain confluent-kafka producer writes
one record that is not Avro into the orders topic, which the services park. The console
serves from a thread; Playwright drives Debian's Chromium (never a downloaded browser).

The list page is opened before the orders are sent: its counts must reach the right numbers
by the page's own live updates. Then filters, a compensated order's page (steps undone in
reverse order, its trace drawn with spans of every service), the dead letter replayed from
the page (once, even when the page is used twice) and the topology. Screenshots of each
page go to the test's tmp dir, and to ``$CHOREO_CONSOLE_SCREENSHOTS`` when set (how
docs/console/*.png were made).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import threading
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import confluent_kafka as ck
import pytest
from builders import received
from observability.obs_kit import (
    Spans,
    confluent,
    eventually,
    isolated_catalog,
    publisher,
    reserve_stock,
    running,
)
from observability.saga_kit import (
    cancel_order,
    order_saga,
    release_stock,
    traced,
    traced_tracker,
)
from playwright.sync_api import Browser, Page, expect, sync_playwright

import choreo
from choreo._config import KafkaConfig, ServiceConfig
from choreo._console import ConsoleServer, sources
from choreo._dlq.replay import REPLAYED_FROM
from choreo.pytest_plugin import JaegerEndpoints
from services import orders
from services.events import (
    CancelOrder,
    OrderPlaced,
    OrderReceived,
    PaymentAuthorized,
    PaymentDeclined,
    PaymentMethod,
    ReleaseStock,
    StockReserved,
)

pytestmark = pytest.mark.stack

CHROMIUM = Path("/usr/bin/chromium")
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TOKEN = "console-test-token"
COMPLETED, DECLINED = 3, 2
WAIT_MS = 60_000


class World:
    """What the sagas ran on: names the assertions need."""

    def __init__(self, unique_name: Callable[[str], str]) -> None:
        self.prefix = unique_name("con")
        self.names = {n: unique_name(n) for n in ("web", "orders", "inventory", "payments")}
        self.tracker_service = unique_name("saga")
        self.saga = order_saga(f"order-{uuid.uuid4().hex[:8]}")
        self.orders_topic = f"{self.prefix}.shop.orders"
        self.dlq = f"choreo.dlq.{self.names['orders']}.{self.orders_topic}"
        self.declined = [unique_name("declined") for _ in range(DECLINED)]
        self.completed = [unique_name("ok") for _ in range(COMPLETED)]


def services(world: World) -> list[choreo.Service]:
    placer = choreo.Service(world.names["orders"])
    placer.on(OrderReceived)(orders.validate_order)
    placer.on(CancelOrder)(cancel_order)

    stock = choreo.Service(world.names["inventory"])
    stock.on(OrderPlaced)(reserve_stock)
    stock.on(ReleaseStock)(release_stock)

    payments = choreo.Service(world.names["payments"])

    @payments.on(StockReserved)
    def charge(event: StockReserved, ctx: choreo.Context) -> None:
        now = datetime.now(UTC)
        amount = Decimal("19.98")
        if event.order_id in world.declined:
            ctx.emit(
                PaymentDeclined(
                    order_id=event.order_id,
                    amount=amount,
                    currency="EUR",
                    decline_code="insufficient_funds",
                    declined_at=now,
                )
            )
        else:
            ctx.emit(PaymentAuthorized(order_id=event.order_id, payment_id=uuid.uuid4(),
                                       amount=amount, currency="EUR",
                                       method=PaymentMethod.CARD, authorized_at=now))  # fmt: skip

    return [placer, stock, payments]


def poison(kafka: str, topic: str) -> None:
    """A record a foreign client wrote: not Avro, with a header that is not UTF-8."""
    producer = ck.Producer({"bootstrap.servers": kafka})
    producer.produce(
        topic, key=b"poison-1", value=b"\xff\xfenot an order", headers=[("x", b"\xff")]
    )
    assert producer.flush(10) == 0


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: `make browser` installs Debian's chromium")
    with sync_playwright() as p:
        found = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS, headless=True)
        yield found
        found.close()


def test_the_console_shows_sagas_traces_dead_letters_and_topology_in_a_browser(
    kafka: str,
    jaeger: JaegerEndpoints,
    unique_name: Callable[[str], str],
    browser: Browser,
    tmp_path: Path,
) -> None:
    world = World(unique_name)
    catalog = isolated_catalog(world.prefix, ("shop.orders", "shop.inventory", "shop.payments"))
    transport = confluent(kafka)
    spans = Spans(jaeger.otlp_http)
    handlers = services(world)
    groups, instruments = traced(handlers, spans.provider, unique_name)
    tracker = traced_tracker(world.saga, kafka, catalog, spans.provider(world.tracker_service))
    stop = threading.Event()
    tracker_thread = threading.Thread(target=tracker.run, args=(stop,), daemon=True)
    console = ConsoleServer(
        sources(
            ServiceConfig(kafka=KafkaConfig(bootstrap_servers=kafka)),
            token=TOKEN,
            jaeger=jaeger.query,
            sagas=[world.saga.name],
            definitions=[world.saga],
        ),
        port=0,
    )
    console_thread = threading.Thread(target=console.run, daemon=True)
    console_thread.start()
    shots = Screens(tmp_path)
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()

    async def sagas_run() -> None:
        async with running(handlers, catalog, transport, instruments, groups.get):
            tracker_thread.start()  # after the services created the topics
            await eventually(lambda: len(tracker.store.partitions) == 3, 30.0, "tracker ready")
            web_name = world.names["web"]
            web = publisher(catalog, transport, web_name, spans.provider(web_name))
            for order_id in world.completed + world.declined:
                await web.publish(received(order_id))
            poison(kafka, world.orders_topic)
            await eventually(lambda: _final(console.url, world), 60.0, "every saga finished")
            await eventually(lambda: _has_topic(kafka, world.dlq), 30.0, "the poison parked")

    failures: list[BaseException] = []

    def sagas_thread() -> None:
        """Playwright's sync API holds this thread's event loop: the services run in another."""
        try:
            asyncio.run(sagas_run())
        except BaseException as error:
            failures.append(error)

    try:
        page.goto(f"{console.url}/?saga={world.saga.name}")  # before any saga exists
        world_thread = threading.Thread(target=sagas_thread)
        world_thread.start()
        world_thread.join(120)
        assert not world_thread.is_alive(), "the sagas did not finish within 120s"
        if failures:
            raise failures[0]
        stop.set()
        tracker_thread.join(20)
        spans.flush()

        # The list page, opened before the first order: its own polling brought the counts.
        count = page.locator(".counts .count[data-state=completed]")
        expect(count).to_have_text(str(COMPLETED), timeout=WAIT_MS)
        expect(page.locator(".counts .count[data-state=compensated]")).to_have_text(str(DECLINED))
        expect(page.locator("table.sagas tr")).to_have_count(1 + COMPLETED + DECLINED)
        shots.take(page, "sagas")

        # Filters, applied by the server.
        page.select_option("select[name=state]", "compensated")
        page.click("#apply")
        expect(page.locator("table.sagas tr")).to_have_count(1 + DECLINED)
        page.select_option("select[name=state]", "")
        page.select_option("select[name=failed_step]", "charge")
        page.click("#apply")
        expect(page.locator("table.sagas tr")).to_have_count(1 + DECLINED)
        page.select_option("select[name=failed_step]", "")
        page.fill("input[name=q]", world.completed[0])
        page.click("#apply")
        expect(page.locator("table.sagas tr")).to_have_count(2)
        expect(page.locator("table.sagas")).to_contain_text("completed")

        # A compensated order: undone last step first, and its trace from every service.
        page.goto(f"{console.url}/?saga={world.saga.name}&q={world.declined[0]}")
        page.click(f"table.sagas a:text('{world.declined[0]}')")
        expect(page.locator("#status")).to_have_text("compensated")
        assert page.locator("#undone li").all_inner_texts() == ["reserve-stock", "order"]
        assert page.locator("svg.timeline circle").count() > 5
        expected = {*world.names.values(), world.tracker_service}
        deadline_spans = 11
        for _ in range(30):
            if page.locator("#trace tr.span").count() >= deadline_spans:
                break
            page.wait_for_timeout(1000)
            page.reload()
        shown = set(page.locator("#trace tr.span").evaluate_all(
            "rows => rows.map(r => r.dataset.service)"))  # fmt: skip
        assert shown == expected, shown
        assert page.locator("#trace tr.span").count() == deadline_spans
        expect(page.locator("#trace")).to_contain_text("choreo.saga.emit")
        shots.take(page, "saga")

        # The dead letter, replayed from the page: once, even when asked twice.
        page.goto(f"{console.url}/dlq?q={world.dlq}")
        expect(page.locator("table.dlq .count")).to_have_text("1")
        expect(page.locator("table.dlq")).to_contain_text("not-avro")
        shots.take(page, "dead-letters")
        for attempt in range(2):
            page.goto(f"{console.url}/dlq/topic?t={world.dlq}")
            expect(page.locator("table.records")).to_contain_text("hex ff fe 6e")
            if attempt == 0:
                shots.take(page, "dead-letter-records")
            page.check("input[name=pick]")
            partition, offset = str(page.get_attribute("input[name=pick]", "value")).split(":")
            page.click("#replay")
            if attempt == 0:
                expect(page.locator("table.to-send tr")).to_have_count(2)
                expect(page.locator("table.to-send")).to_contain_text(world.orders_topic)
                shots.take(page, "replay-confirm")
                page.fill("input[name=token]", TOKEN)
                page.click("#send")
                expect(page.locator("#result")).to_contain_text("replayed 1 to")
            else:
                expect(page.locator("main")).to_contain_text("1 already replayed before")
                expect(page.locator("#send")).to_have_count(0)
        assert _replayed(kafka, world.orders_topic) == [
            f"{world.dlq}/{partition}/{offset}".encode()
        ]

        # A change without the page's CSRF value is refused; with it (and the token, now
        # a cookie since the replay) the purge asks first, then empties the topic.
        assert _post(f"{console.url}/dlq/purge/send", f"topic={world.dlq}") == 403
        page.goto(f"{console.url}/dlq/topic?t={world.dlq}")
        page.click("#purge")
        expect(page.locator("main")).to_contain_text("This deletes the 1 records now in")
        page.click("#delete")
        expect(page.locator("#result")).to_have_text("deleted 1 records")
        page.goto(f"{console.url}/dlq?q={world.dlq}")
        expect(page.locator("table.dlq .count")).to_have_text("0")

        page.goto(f"{console.url}/topology")
        expect(page.locator(".diagram svg")).to_have_count(1)
        expect(page.locator("main")).to_contain_text("Consumer lag by group and partition")
        shots.take(page, "topology", whole=False)  # the diagram alone is 1742 x 1282
    finally:
        stop.set()
        console.stop()
        console_thread.join(10)
        context.close()
        spans.shutdown()
    print(f"\nscreenshots: {', '.join(str(p) for p in shots.saved)}")


class Screens:
    def __init__(self, tmp_path: Path) -> None:
        self.dir = tmp_path
        self.saved: list[Path] = []
        extra = os.environ.get("CHOREO_CONSOLE_SCREENSHOTS")
        self.copy_to = Path(extra) if extra else None

    def take(self, page: Page, name: str, *, whole: bool = True) -> None:
        path = self.dir / f"{name}.png"
        page.screenshot(path=str(path), full_page=whole)
        self.saved.append(path)
        if self.copy_to is not None:
            self.copy_to.mkdir(parents=True, exist_ok=True)
            shutil.copy(path, self.copy_to / path.name)


def _final(url: str, world: World) -> bool:
    """Every saga reached its end, as the console's first page reads it."""
    with urllib.request.urlopen(f"{url}/?saga={world.saga.name}", timeout=5) as answer:
        body = answer.read().decode()
    return (
        f'data-state="completed"><a href="/?saga={world.saga.name}&amp;state=completed">'
        f"{COMPLETED}</a>"
        in body
        and f'data-state="compensated"><a href="/?saga={world.saga.name}&amp;state=compensated">'
        f"{DECLINED}</a>"
        in body
    )


def _has_topic(kafka: str, topic: str) -> bool:
    admin = ck.admin.AdminClient({"bootstrap.servers": kafka})
    return topic in admin.list_topics(timeout=10).topics


def _replayed(kafka: str, topic: str) -> list[bytes]:
    """The ``choreo_replayed_from`` header of every record now in ``topic`` that has one."""
    consumer = ck.Consumer(
        {
            "bootstrap.servers": kafka,
            "group.id": f"check-{uuid.uuid4().hex}",
            "auto.offset.reset": "earliest",
            "isolation.level": "read_committed",
            "enable.partition.eof": True,
        }
    )
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        consumer.assign([ck.TopicPartition(topic, p, ck.OFFSET_BEGINNING) for p in partitions])
        open_partitions, found = set(partitions), []
        while open_partitions:
            message = consumer.poll(10)
            assert message is not None, f"no end of {topic} within 10s"
            if message.error() is not None:
                open_partitions.discard(message.partition())
                continue
            found += [v for k, v in message.headers() or [] if k == REPLAYED_FROM]
        return found
    finally:
        consumer.close()


def _post(url: str, body: str) -> int:
    request = urllib.request.Request(url, data=body.encode(), method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return int(answer.status)
    except urllib.error.HTTPError as error:
        return error.code
