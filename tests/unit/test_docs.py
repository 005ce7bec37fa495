"""``choreo docs``: the checked-in docs match the code, and the AsyncAPI document holds together."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import choreo
from choreo import load_config
from choreo._docs import ASYNCAPI_FILE, generate, stale
from choreo._docs.emits import emitted_events
from choreo._schemas import Catalog
from services.events import OrderCancelled, OrderPlaced, OrderReceived

ROOT = Path(__file__).resolve().parents[2]
REGENERATE = "choreo docs --config deploy/ingress.toml"


@pytest.fixture(scope="module")
def documents() -> dict[str, str]:
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(ROOT)  # services/ is imported from the project root, as the CLI does
        config = load_config(ROOT / "deploy" / "ingress.toml", environ={})
        return generate("services", Catalog.load(ROOT / "schemas"), config.ingress.routes)


def test_the_checked_in_docs_are_up_to_date(documents: dict[str, str]) -> None:
    assert stale(documents, ROOT / "docs") == [], f"docs/ is stale: run `{REGENERATE}`"


def test_generation_is_deterministic(documents: dict[str, str]) -> None:
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(ROOT)
        config = load_config(ROOT / "deploy" / "ingress.toml", environ={})
        again = generate("services", Catalog.load(ROOT / "schemas"), config.ingress.routes)
    assert again == documents


def _refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        if "$ref" in node:
            yield node["$ref"]
        for value in node.values():
            yield from _refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from _refs(value)


def _resolve(document: dict[str, Any], ref: str) -> Any:
    assert ref.startswith("#/"), ref
    node: Any = document
    for part in ref[2:].split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def test_the_asyncapi_document_is_complete_and_every_reference_resolves(
    documents: dict[str, str],
) -> None:
    doc = json.loads(documents[ASYNCAPI_FILE])
    assert doc["asyncapi"] == "3.0.0"
    assert doc["info"]["title"] and doc["info"]["version"]
    for ref in _refs(doc):
        _resolve(doc, ref)  # a KeyError names the dangling reference
    for name, operation in doc["operations"].items():
        assert operation["action"] in ("send", "receive"), name
        channel = operation["channel"]["$ref"]
        for message in operation["messages"]:  # AsyncAPI 3: the operation's channel's messages
            assert message["$ref"].startswith(channel + "/messages/"), (name, message)
    for message in doc["components"]["messages"].values():
        assert message["payload"]["schemaFormat"].startswith("application/vnd.apache.avro+json")
        assert message["payload"]["schema"]["type"] == "record"


def test_every_service_and_the_saga_tracker_have_their_operations(
    documents: dict[str, str],
) -> None:
    operations = json.loads(documents[ASYNCAPI_FILE])["operations"]
    assert operations["orders.receive.shop.orders"]["messages"] == [
        {"$ref": "#/channels/shop.orders/messages/shop.orders.CancelOrder"},
        {"$ref": "#/channels/shop.orders/messages/shop.orders.OrderReceived"},
    ]
    assert "ingress.send.shop.orders" in operations
    assert "choreo-saga-order.send.shop.inventory" in operations  # ReleaseStock


svc = choreo.Service("docs-sample")


def _cancel(order: OrderReceived) -> OrderCancelled:
    return OrderCancelled(order_id=order.order_id)  # never run: only read


@svc.on(OrderReceived)
def sample_handler(event: OrderReceived, ctx: choreo.Context) -> None:
    if event.items:
        ctx.emit(OrderPlaced(order_id=event.order_id))
    ctx.emit(_cancel(event))


def test_emits_are_read_from_the_handler_and_the_helpers_it_calls() -> None:
    assert emitted_events(sample_handler) == {OrderPlaced, OrderCancelled}
