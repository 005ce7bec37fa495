# ruff: noqa: E501  (the templates are other files' lines, kept as they will read)
"""The files of a new project, as ``string.Template`` texts (``$package``, ``$title``; ``$$`` is $).

One domain, small enough to read in a minute: orders are placed, the
payments service charges them (or declines), and the order saga refunds a
charge when the order cannot complete in time.
"""

from __future__ import annotations

_RECORD = """{
  "type": "record",
  "name": "%(name)s",
  "namespace": "$package.%(topic)s",
  "doc": "%(doc)s",
  "fields": [
    {"name": "order_id", "type": "string", "doc": "Id of the order; the key of every topic."},
%(fields)s
  ]
}
"""

_AMOUNT = '    {"name": "amount_cents", "type": "long", "doc": "In the smallest currency unit."}'
_AT = '    {"name": "%s", "type": {"type": "long", "logicalType": "timestamp-millis"}}'


def _schema(topic: str, name: str, doc: str, *fields: str) -> str:
    return _RECORD % {"name": name, "topic": topic, "doc": doc, "fields": ",\n".join(fields)}


FILES: dict[str, str] = {
    "README.md": """# $title

An event-driven project on [choreo](https://pypi.org/project/choreo/): typed events in
`schemas/`, one service in `$package/payments.py`, one saga in `$package/sagas.py`.

```sh
make demo   # starts the local stack (Kafka, PostgreSQL, Connect, Jaeger) and the service
make test   # the broker-free tests, then the tests on the real stack
```

- Add an event: write `schemas/$package/<topic>/<Name>.v1.avsc`, list it in
  `schemas/catalog.toml`, run `choreo schemas codegen` (models in `$package/events.py`).
- Change an event: add `<Name>.v2.avsc` and run `choreo schemas check`.
- Run a service: `choreo run $package.payments`; the saga tracker:
  `choreo saga run $package.sagas:order_saga`.
""",
    "pyproject.toml": """[project]
name = "$package"
version = "0.1.0"
requires-python = ">=3.11"
dependencies = ["choreo"]

[tool.pytest.ini_options]
testpaths = ["tests"]
pythonpath = ["."]
addopts = "-ra --strict-markers"
markers = ["stack: needs the real local stack (choreo dev up)"]

[tool.ruff]
line-length = 100

[tool.ruff.lint]
select = ["E", "F", "W", "I", "B", "UP"]
isort.known-first-party = ["$package"]
""",
    "Makefile": """PYTHON ?= python3

.PHONY: up demo test

up:
\tchoreo dev up

demo: up
\tchoreo run $package.payments

test: up
\t$$(PYTHON) -m pytest
""",
    "Dockerfile": """# One image for every process of this project: `choreo run $package.payments`, the saga tracker.
FROM python:3.11-slim
RUN useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin app
WORKDIR /app
COPY pyproject.toml ./
COPY schemas ./schemas
COPY $package ./$package
RUN pip install --no-cache-dir .
ENV PYTHONUNBUFFERED=1 CHOREO_METRICS_HOST=0.0.0.0 CHOREO_METRICS_PORT=9464
USER 10001
EXPOSE 9464
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \\
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:9464/readyz', timeout=2)"]
CMD ["choreo", "run", "$package.payments"]
""",
    "docker-compose.yml": """# The app's processes against a Kafka you run (KAFKA_BOOTSTRAP, default host.docker.internal:9092).
services:
  payments:
    build: .
    command: ["choreo", "run", "$package.payments"]
    environment:
      CHOREO_BOOTSTRAP_SERVERS: $${KAFKA_BOOTSTRAP:-host.docker.internal:9092}
    restart: unless-stopped
  order-saga:
    build: .
    command: ["choreo", "saga", "run", "$package.sagas:order_saga"]
    environment:
      CHOREO_BOOTSTRAP_SERVERS: $${KAFKA_BOOTSTRAP:-host.docker.internal:9092}
    restart: unless-stopped
""",
    "schemas/catalog.toml": """# Topics and the events each carries; schemas live beside this file.
# Never edit a published version: add Name.v(N+1).avsc and run `choreo schemas check`.

[codegen]
module = "$package/events.py"

[topics."$package.orders"]
events = ["$package.orders.OrderPlaced"]
key = "order_id"
partitions = 3

[topics."$package.payments"]
events = [
    "$package.payments.PaymentCharged",
    "$package.payments.PaymentDeclined",
    "$package.payments.RefundPayment",
    "$package.payments.PaymentRefunded",
]
key = "order_id"
partitions = 3
""",
    "schemas/$package/orders/OrderPlaced.v1.avsc": _schema(
        "orders", "OrderPlaced", "A customer placed an order.", _AMOUNT, _AT % "placed_at"
    ),
    "schemas/$package/payments/PaymentCharged.v1.avsc": _schema(
        "payments", "PaymentCharged", "The order's amount was charged.", _AMOUNT
    ),
    "schemas/$package/payments/PaymentDeclined.v1.avsc": _schema(
        "payments",
        "PaymentDeclined",
        "The charge was refused.",
        '    {"name": "reason", "type": "string", "doc": "Why, for the customer."}',
    ),
    "schemas/$package/payments/RefundPayment.v1.avsc": _schema(
        "payments", "RefundPayment", "Undo a charge (the saga's compensation).", _AMOUNT
    ),
    "schemas/$package/payments/PaymentRefunded.v1.avsc": _schema(
        "payments", "PaymentRefunded", "The charge was paid back.", _AMOUNT
    ),
    "$package/__init__.py": '"""$title: services and sagas on choreo."""\n',
    "$package/payments.py": '''"""The payments service: charges placed orders, refunds when the saga asks.

Run it with ``choreo run $package.payments``.
"""

from __future__ import annotations

import choreo

from $package.events import (
    OrderPlaced,
    PaymentCharged,
    PaymentDeclined,
    PaymentRefunded,
    RefundPayment,
)

LIMIT_CENTS = 100_000
"""Orders above this are declined (a stand-in for a payment provider)."""

svc = choreo.Service("payments", emits=[PaymentCharged, PaymentDeclined, PaymentRefunded])


@svc.on(OrderPlaced)
def charge(event: OrderPlaced, ctx: choreo.Context) -> None:
    if event.amount_cents > LIMIT_CENTS:
        ctx.emit(PaymentDeclined(order_id=event.order_id, reason="over the limit"))
    else:
        ctx.emit(PaymentCharged(order_id=event.order_id, amount_cents=event.amount_cents))


@svc.on(RefundPayment)
def refund(event: RefundPayment, ctx: choreo.Context) -> None:
    ctx.emit(PaymentRefunded(order_id=event.order_id, amount_cents=event.amount_cents))
''',
    "$package/sagas.py": '''"""The order saga: a charge is refunded if the order fails or runs out of time.

Run the tracker with ``choreo saga run $package.sagas:order_saga``.
"""

from __future__ import annotations

from datetime import timedelta

from choreo.saga import Saga, Step

from $package.events import (
    OrderPlaced,
    PaymentCharged,
    PaymentDeclined,
    PaymentRefunded,
    RefundPayment,
)

order_saga = Saga(
    "order",
    version=1,
    start=OrderPlaced,
    deadline=timedelta(minutes=5),
    steps=[
        Step(
            "charge",
            success=[PaymentCharged],
            failure=[PaymentDeclined],
            compensate=RefundPayment,
            compensated=[PaymentRefunded],
        ),
    ],
)
''',
    "tests/test_payments.py": '''"""The payments handlers, broker-free: the same runtime on the in-memory transport."""

from __future__ import annotations

from datetime import UTC, datetime

from choreo.testing import TestService

from $package import payments
from $package.events import OrderPlaced, PaymentCharged, PaymentDeclined


def placed(order_id: str, amount_cents: int) -> OrderPlaced:
    return OrderPlaced(order_id=order_id, amount_cents=amount_cents, placed_at=datetime.now(UTC))


def test_an_order_within_the_limit_is_charged() -> None:
    with TestService(payments.svc) as t:
        t.send(placed("o-1", 2_500))
        [charged] = t.emitted(PaymentCharged)
        assert (charged.order_id, charged.amount_cents) == ("o-1", 2_500)
        assert t.emitted(PaymentDeclined) == []


def test_an_order_over_the_limit_is_declined() -> None:
    with TestService(payments.svc) as t:
        t.send(placed("o-2", payments.LIMIT_CENTS + 1))
        assert [d.order_id for d in t.emitted(PaymentDeclined)] == ["o-2"]
''',
    "tests/test_sagas.py": '''"""The saga's definition against the catalog: what ``choreo saga run`` checks at start-up."""

from __future__ import annotations

from pathlib import Path

import choreo

from $package.sagas import order_saga

SCHEMAS = Path(__file__).resolve().parents[1] / "schemas"


def test_the_order_saga_names_only_events_of_the_catalog() -> None:
    order_saga.validate(choreo.Catalog.load(SCHEMAS))
''',
    "tests/test_on_kafka.py": '''"""The payments service as ``choreo run`` runs it, on the real broker (``make up``)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime

import choreo
import pytest
from confluent_kafka import Consumer

from $package.events import OrderPlaced

pytestmark = pytest.mark.stack


def test_a_placed_order_is_charged_by_the_running_service(
    kafka: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CHOREO_BOOTSTRAP_SERVERS", kafka)  # the service's and the publisher's
    order_id = f"o-{uuid.uuid4().hex[:8]}"
    asyncio.run(_publish(OrderPlaced(order_id=order_id, amount_cents=1_000, placed_at=_now())))
    service = subprocess.Popen([sys.executable, "-m", "choreo", "run", "$package.payments"])
    try:
        assert _key_seen(kafka, "$package.payments", order_id.encode()), "no PaymentCharged"
    finally:
        service.terminate()
        assert service.wait(30) == 0  # SIGTERM drains and exits cleanly


def _now() -> datetime:
    return datetime.now(UTC)


async def _publish(event: OrderPlaced) -> None:
    async with choreo.Publisher("test") as publisher:
        await publisher.publish(event)  # correlated by its key, the order id


def _key_seen(kafka: str, topic: str, key: bytes, timeout_s: float = 60.0) -> bool:
    consumer = Consumer(
        {
            "bootstrap.servers": kafka,
            "group.id": f"test-{uuid.uuid4().hex}",
            "auto.offset.reset": "earliest",
        }
    )
    consumer.subscribe([topic])
    try:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is not None and message.error() is None and message.key() == key:
                return True
        return False
    finally:
        consumer.close()
''',
}
