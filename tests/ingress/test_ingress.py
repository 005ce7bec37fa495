"""Signed webhooks into events on the real broker: what is accepted is on the topic with its
headers; what is refused leaves nothing there."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from builders import received
from conftest import MAX_BODY_BYTES, SECRET, Ingress, StartIngress, signed

from choreo._dlq.reader import DeadLetter
from choreo._ingress import legacy_signature
from choreo._schemas import Catalog, Codec
from choreo.ingress import SIGNATURE_HEADER, TIMESTAMP_HEADER
from services.events import LineItem, OrderReceived

pytestmark = pytest.mark.stack

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
TRACEPARENT = f"00-{TRACE_ID}-00f067aa0ba902b7-01"


@pytest.fixture(scope="module")
def ingress(start_ingress: StartIngress, kafka: str, module_schemas: Path) -> Ingress:
    return start_ingress(kafka, module_schemas)


def _body(order: OrderReceived) -> bytes:
    return order.model_dump_json().encode()


def test_a_signed_order_is_published_with_the_callers_correlation_and_trace(
    ingress: Ingress, published: Callable[[str], list[DeadLetter]], module_schemas: Path
) -> None:
    order = received("web-1")
    body = _body(order)
    reply = ingress.request(
        "POST",
        "/orders",
        body,
        {**signed(body), "X-Correlation-Id": "checkout-42", "traceparent": TRACEPARENT},
    )
    assert reply.status == 202, reply.body
    assert reply.headers["x-correlation-id"] == "checkout-42"
    assert reply.body["correlation_id"] == "checkout-42"
    [record] = published("web-1")
    assert record.header("ce_id") == reply.body["event_id"]
    assert record.header("ce_type") == "shop.orders.OrderReceived"
    assert record.header("ce_source") == "ingress"
    assert record.header("choreo_correlation_id") == "checkout-42"
    assert TRACE_ID in (record.header("traceparent") or "")
    codec = Codec(Catalog.load(module_schemas))
    assert codec.decode(record.value, OrderReceived) == order


def test_without_a_correlation_id_the_events_key_is_its_correlation_and_it_is_returned(
    ingress: Ingress, published: Callable[[str], list[DeadLetter]]
) -> None:
    body = _body(received("web-2"))
    reply = ingress.request("POST", "/orders", body, signed(body))
    assert reply.status == 202, reply.body
    [record] = published("web-2")
    assert reply.headers["x-correlation-id"] == reply.body["correlation_id"] == "web-2"
    assert record.header("choreo_correlation_id") == "web-2" != reply.body["event_id"]


def test_a_replayed_request_is_refused_and_published_once(
    ingress: Ingress, published: Callable[[str], list[DeadLetter]]
) -> None:
    body = _body(received("web-replay"))
    headers = signed(body)
    first = ingress.request("POST", "/orders", body, headers)
    again = ingress.request("POST", "/orders", body, headers)
    assert (first.status, again.status) == (202, 409)
    assert "replay" in again.body["error"]
    assert [r.header("ce_id") for r in published("web-replay")] == [first.body["event_id"]]


def _wrong_quantity(order_id: str) -> tuple[bytes, dict[str, str]]:
    data = json.loads(_body(received(order_id)))
    data["items"][0]["quantity"] = "lots"
    body = json.dumps(data).encode()
    return body, signed(body)


def _oversized(order_id: str) -> tuple[bytes, dict[str, str]]:
    order = received(order_id)
    lines = [
        LineItem(sku=f"SKU-{i}", quantity=1, unit_price=order.items[0].unit_price)
        for i in range(100)
    ]
    many = order.model_copy(update={"items": lines})
    body = _body(many)
    assert len(body) > MAX_BODY_BYTES
    return body, signed(body)


def _signed_with_another_secret(order_id: str) -> tuple[bytes, dict[str, str]]:
    body = _body(received(order_id))
    return body, signed(body, secret="not-the-secret")


def _changed_after_signing(order_id: str) -> tuple[bytes, dict[str, str]]:
    body = _body(received(order_id))
    return body.replace(b"Ghent", b"Paris"), signed(body)


def _unsigned(order_id: str) -> tuple[bytes, dict[str, str]]:
    return _body(received(order_id)), {}


def _stale(order_id: str) -> tuple[bytes, dict[str, str]]:
    body = _body(received(order_id))
    return body, signed(body, timestamp=int(time.time()) - 301)


def _signed_for_another_path(order_id: str) -> tuple[bytes, dict[str, str]]:
    body = _body(received(order_id))
    return body, signed(body, "/approvals")


def _signed_for_another_method(order_id: str) -> tuple[bytes, dict[str, str]]:
    body = _body(received(order_id))
    return body, signed(body, method="PUT")


def _signed_with_a_query_that_was_dropped(order_id: str) -> tuple[bytes, dict[str, str]]:
    body = _body(received(order_id))
    return body, signed(body, "/orders?tenant=a")


def _signed_v1(order_id: str) -> tuple[bytes, dict[str, str]]:
    body = _body(received(order_id))
    when = int(time.time())
    v1 = legacy_signature(SECRET, body, when)
    return body, {TIMESTAMP_HEADER: str(when), SIGNATURE_HEADER: v1}


def _not_declared_json(order_id: str) -> tuple[bytes, dict[str, str]]:
    body = _body(received(order_id))
    return body, {**signed(body), "Content-Type": "text/plain"}


def _a_key_twice(order_id: str) -> tuple[bytes, dict[str, str]]:
    body = _body(received(order_id)).replace(b"{", b'{"order_id": "someone-else", ', 1)
    return body, signed(body)


def _not_json(order_id: str) -> tuple[bytes, dict[str, str]]:
    body = b'{"order_id": "' + order_id.encode() + b'", '
    return body, signed(body)


@pytest.mark.parametrize(
    ("make", "status", "says"),
    [
        (_wrong_quantity, 422, "items.0.quantity"),
        (_not_json, 400, "not valid JSON"),
        (_oversized, 413, f"larger than {MAX_BODY_BYTES} bytes"),
        (_signed_with_another_secret, 401, "signature does not match"),
        (_changed_after_signing, 401, "signature does not match"),
        (_unsigned, 401, "missing X-Choreo-Timestamp or X-Choreo-Signature"),
        (_stale, 401, "at most 300s allowed"),
        (_signed_for_another_path, 401, "signature does not match"),
        (_signed_for_another_method, 401, "signature does not match"),
        (_signed_with_a_query_that_was_dropped, 401, "signature does not match"),
        (_signed_v1, 401, "v1= is no longer accepted"),
        (_not_declared_json, 415, "Content-Type must be application/json"),
        (_a_key_twice, 400, "key 'order_id' more than once"),
    ],
    ids=lambda value: getattr(value, "__name__", str(value)).strip("_"),
)
def test_a_refused_request_gets_its_status_and_publishes_nothing(
    ingress: Ingress,
    published: Callable[[str], list[DeadLetter]],
    make: Callable[[str], tuple[bytes, dict[str, str]]],
    status: int,
    says: str,
) -> None:
    order_id = f"refused-{make.__name__.strip('_')}"
    body, headers = make(order_id)
    reply = ingress.request("POST", "/orders", body, headers)
    assert reply.status == status, reply.body
    assert says in reply.body["error"]
    # A good order for the same key afterwards is the key's only record: nothing came before it.
    good = _body(received(order_id))
    accepted = ingress.request("POST", "/orders", good, signed(good))
    assert accepted.status == 202, accepted.body
    assert [r.header("ce_id") for r in published(order_id)] == [accepted.body["event_id"]]


def test_a_wrong_field_is_named_by_its_path(ingress: Ingress) -> None:
    body, headers = _wrong_quantity("web-fields")
    reply = ingress.request("POST", "/orders", body, headers)
    assert reply.status == 422
    assert list(reply.body["fields"]) == ["items.0.quantity"]


def test_probes_answer_and_unknown_routes_are_named(ingress: Ingress) -> None:
    assert ingress.request("GET", "/healthz").body == {"status": "ok"}
    assert ingress.request("GET", "/readyz").body == {"status": "ready"}
    assert ingress.request("GET", "/orders").status == 405
    missing = ingress.request("POST", "/nowhere", b"{}")
    assert (missing.status, missing.body["error"]) == (404, "no route POST /nowhere")


def test_the_secret_never_shows_in_the_output(ingress: Ingress) -> None:
    body = _body(received("web-log"))
    ingress.request("POST", "/orders", body, signed(body, secret="not-the-secret"))
    assert SECRET not in ingress.log.read_text()


def test_with_the_broker_down_a_request_gets_503_and_can_be_sent_again(
    start_ingress: StartIngress, module_schemas: Path
) -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        nowhere = f"127.0.0.1:{probe.getsockname()[1]}"
    with socket.socket() as spare:  # for the loopback metrics
        spare.bind(("127.0.0.1", 0))
        metrics_port = spare.getsockname()[1]
    down = start_ingress(
        nowhere,
        module_schemas,
        CHOREO_INGRESS__PUBLISH_TIMEOUT_S="2",
        CHOREO_INGRESS__METRICS_PORT=str(metrics_port),
    )
    ready = down.request("GET", "/readyz")
    assert (ready.status, ready.body) == (503, {"status": "not ready"})  # nothing more, public
    assert nowhere in down.log.read_text()
    loopback = Ingress(f"http://127.0.0.1:{metrics_port}", down.process, down.log)
    detailed = loopback.request("GET", "/readyz")
    assert detailed.status == 503 and nowhere in detailed.body["text"]
    body = _body(received("web-down"))
    headers = signed(body)
    first = down.request("POST", "/orders", body, headers)
    again = down.request("POST", "/orders", body, headers)  # not a replay: nothing was accepted
    assert (first.status, again.status) == (503, 503)
    assert "did not acknowledge" in first.body["error"]
    scraped = loopback.request("GET", "/metrics").body["text"]
    assert 'choreo_ingress_requests_total{path="/orders",status="503"} 2.0' in scraped
    assert 'choreo_ingress_requests_total{path="/readyz",status="503"} 1.0' in scraped
