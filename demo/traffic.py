"""The outside world of the demo: customers posting (and cancelling) orders, a poison message,
a manager.

Orders go through ``choreo ingress`` as signed webhooks, like a shop front-end would send them;
a customer's cancel is published by the shop front-end (``OrderCancellationRequested``); the
poison message is written straight to the topic (a broken producer); the manager works the
approval queue with the same function as ``python -m services.approval_desk``.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

import confluent_kafka as ck

import choreo
from choreo import _headers
from choreo.ingress import CORRELATION_HEADER, sign
from demo.scenarios import Manager, PlannedOrder
from services.approval_desk import desk_publisher, publish_decision
from services.approvals import pending
from services.events import OrderCancellationRequested, OrderReceived

CANCEL_REASON = "ordered by mistake"
"""What the demo's customers give as their reason; ``choreo saga show`` repeats it."""
MANAGER = "demo-manager"
REJECTION_COMMENT = "order value over the customer's usual"
"""What the demo's manager writes when rejecting; the customer's notice quotes it."""


def send_orders(
    orders: Sequence[PlannedOrder],
    url: str,
    secret: str,
    rate: float,
    sent: list[str],
    before: Callable[[int], None] | None = None,
) -> None:
    """POST each order at about ``rate`` per second; raise on any answer but 202.

    ``before(n)`` runs before the n-th order goes out (the demo's chaos hook).
    """

    parts = urllib.parse.urlsplit(url)
    target = parts.path + (f"?{parts.query}" if parts.query else "")

    def post(order: PlannedOrder) -> None:
        body = json.dumps(order.body).encode()
        request = urllib.request.Request(
            url,
            data=body,
            method="POST",
            headers={
                "Content-Type": "application/json",
                CORRELATION_HEADER: order.order_id,  # the saga id is the order id
                **sign(secret, body, method="POST", target=target),
            },
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as reply:
                status = reply.status
        except urllib.error.HTTPError as error:
            raise RuntimeError(
                f"the ingress answered {error.code} for {order.order_id}: {error.read()!r}"
            ) from None
        if status != 202:
            raise RuntimeError(f"the ingress answered {status} for {order.order_id}")
        sent.append(order.order_id)

    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=8) as pool:
        futures = []
        for n, order in enumerate(orders):
            time.sleep(max(0.0, started + n / rate - time.monotonic()))
            if before is not None:
                before(n)
            futures.append(pool.submit(post, order))
        for future in futures:
            future.result()


def send_poison(bootstrap: str, topic: str, key: str) -> None:
    """A record that says it is an OrderReceived but is not Avro: the orders service's DLQ."""
    producer = ck.Producer({"bootstrap.servers": bootstrap})
    headers = _headers.event_headers(
        OrderReceived.event_type.encode(), b"broken-producer", key, key, None
    )
    producer.produce(topic, key=key.encode(), value=b"{not avro at all", headers=list(headers))
    if producer.flush(30):
        raise RuntimeError("the poison message was not delivered")


class _Actor(threading.Thread, ABC):
    """A person of the demo, acting from a thread of its own until stopped.

    An error ends the thread and is kept in ``error``: the demo reports it and fails.
    """

    def __init__(self, name: str) -> None:
        super().__init__(name=name, daemon=True)
        self.error: BaseException | None = None
        self._halt = threading.Event()

    def run(self) -> None:
        try:
            asyncio.run(self._work())
        except BaseException as error:  # reported by the demo, which then fails
            self.error = error

    @abstractmethod
    async def _work(self) -> None:
        """What the person does until ``stop``."""

    def stop(self) -> None:
        self._halt.set()
        self.join()


class ApprovalDesk(_Actor):
    """Approves or rejects the waiting orders the plan says to; leaves the rest to time out."""

    def __init__(
        self, orders: Sequence[PlannedOrder], dsn: str, config: choreo.ServiceConfig
    ) -> None:
        super().__init__("approval-desk")
        self._mine = {o.order_id for o in orders}
        self._answers = {
            o.order_id: o.scenario.manager
            for o in orders
            if o.scenario.manager in (Manager.APPROVE, Manager.REJECT)
        }
        self._dsn = dsn
        self._config = config
        self.decided: dict[str, Manager] = {}
        self.waiting = 0
        """Orders of this run in the approval queue right now (decided or not)."""

    async def _work(self) -> None:
        """One publisher for the whole demo; the queue is looked at twice a second."""
        async with desk_publisher(self._config) as publisher:
            while not self._halt.is_set():
                queue = [p.order_id for p in pending(self._dsn) if p.order_id in self._mine]
                self.waiting = len(queue)
                for order_id in queue:
                    if order_id in self._answers and order_id not in self.decided:
                        await self._decide(publisher, order_id)
                await asyncio.sleep(0.5)

    async def _decide(self, publisher: choreo.Publisher, order_id: str) -> None:
        answer = self._answers[order_id]
        comment = REJECTION_COMMENT if answer is Manager.REJECT else None
        await publish_decision(publisher, order_id, MANAGER, comment)
        self.decided[order_id] = answer


class Customers(_Actor):
    """Customers who cancel: each planned cancel is published its drawn delay after the order
    was accepted (``sent`` is the list of accepted order ids, filled as the ingress answers)."""

    def __init__(
        self, orders: Sequence[PlannedOrder], sent: list[str], config: choreo.ServiceConfig
    ) -> None:
        super().__init__("customers")
        self._plans = {o.order_id: o for o in orders if o.cancel_after_s is not None}
        self._sent = sent
        self._config = config
        self.cancelled: list[str] = []

    async def _work(self) -> None:
        accepted: dict[str, float] = {}
        async with choreo.Publisher(source="shop-frontend", config=self._config) as publisher:
            while not self._halt.is_set() and len(self.cancelled) < len(self._plans):
                now = time.monotonic()
                for order_id in self._sent[len(accepted) :]:
                    accepted[order_id] = now
                for order_id, at in accepted.items():
                    plan = self._plans.get(order_id)
                    if plan is None or order_id in self.cancelled:
                        continue
                    if plan.cancel_after_s is not None and at + plan.cancel_after_s <= now:
                        await self._cancel(publisher, plan)
                await asyncio.sleep(0.1)

    async def _cancel(self, publisher: choreo.Publisher, order: PlannedOrder) -> None:
        event = OrderCancellationRequested(
            order_id=order.order_id,
            requested_by=order.body["customer_id"],
            reason=CANCEL_REASON,
            requested_at=datetime.now(UTC),
        )
        await publisher.publish(event, correlation_id=order.order_id)
        self.cancelled.append(order.order_id)
