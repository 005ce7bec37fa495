"""Exactly-once mode: kill -9 mid-run, restart; read_committed readers see each output once."""

from __future__ import annotations

import signal
import subprocess
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
from builders import placed
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from choreo import _headers
from choreo._schemas import Catalog, Codec
from services.events import OrderPlaced, StockReservationFailed

pytestmark = pytest.mark.stack
COUNT = 20_000


def _outputs(
    kafka: str, topic: str, isolation: str, expected: int, timeout_s: float
) -> Counter[str]:
    """Causation ids (input event ids) of the outputs, as a reader with ``isolation`` sees them."""
    consumer = Consumer(
        {
            "bootstrap.servers": kafka,
            "group.id": f"reader-{time.time_ns()}",
            "auto.offset.reset": "earliest",
            "isolation.level": isolation,
        }
    )
    consumer.subscribe([topic])
    seen: Counter[str] = Counter()
    deadline = time.monotonic() + timeout_s
    quiet_until = None
    while time.monotonic() < deadline:
        messages = consumer.consume(1000, 0.5)
        for message in messages:
            if message.error() is None:
                seen[dict(message.headers() or [])[_headers.CAUSATION].decode()] += 1
        if len(seen) >= expected:
            quiet_until = quiet_until or time.monotonic() + 3  # keep reading: duplicates land late
            if time.monotonic() > quiet_until:
                break
    consumer.close()
    return seen


def test_kill_9_in_exactly_once_mode_shows_every_output_exactly_once(
    kafka: str,
    isolated_schemas: Path,
    tmp_path: Path,
    run_service: Callable[..., subprocess.Popen[str]],
) -> None:
    catalog = Catalog.load(isolated_schemas)
    codec = Codec(catalog)
    inputs = catalog.topic_of(OrderPlaced.event_type).name
    outputs = catalog.topic_of(StockReservationFailed.event_type).name
    admin = AdminClient({"bootstrap.servers": kafka})
    for future in admin.create_topics([NewTopic(t, 3, 1) for t in (inputs, outputs)]).values():
        future.result(30)
    producer = Producer({"bootstrap.servers": kafka, "linger.ms": 20})
    template = placed("x")
    for i in range(COUNT):
        event = template.model_copy(update={"order_id": f"o-{i}"})
        headers = _headers.event_headers(
            b"shop.orders.OrderPlaced", b"test", f"in-{i}", f"in-{i}", None
        )
        producer.produce(
            inputs, key=event.order_id.encode(), value=codec.encode(event), headers=headers
        )
        producer.poll(0)
    assert producer.flush(60) == 0

    ledger = tmp_path / "ledger.txt"
    config = tmp_path / "service.toml"
    config.write_text('[kafka.client_options]\n"session.timeout.ms" = "6000"\n')
    env = {
        "LEDGER_FILE": str(ledger),
        "CHOREO_EXACTLY_ONCE": "true",
        "CHOREO_INSTANCE_ID": f"test-{time.time_ns()}",
        "CHOREO_COMMIT_INTERVAL_S": "0.2",
    }
    first = run_service("eos_service", isolated_schemas, config, **env)
    deadline = time.monotonic() + 90
    while not (ledger.exists() and len(ledger.read_text().splitlines()) >= 5_000):
        assert time.monotonic() < deadline and first.poll() is None, "the service did not get going"
        time.sleep(0.1)
    first.send_signal(signal.SIGKILL)
    first.wait(10)

    second = run_service("eos_service", isolated_schemas, config, **env)
    committed = _outputs(kafka, outputs, "read_committed", COUNT, timeout_s=120)
    second.send_signal(signal.SIGTERM)
    assert second.wait(30) == 0

    handled = Counter(ledger.read_text().splitlines())
    assert len(committed) == COUNT  # nothing lost
    assert set(committed.values()) == {1}  # nothing twice, as read_committed readers see it
    redone = sum(n - 1 for n in handled.values())
    assert redone > 0  # the kill really interrupted uncommitted work that was done again
    print(f"outputs: {sum(committed.values())}; handled twice after the kill: {redone}")
