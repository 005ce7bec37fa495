"""Which topics ``choreo acl`` lets a service write: what its code emits, or what it declares."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import choreo
from choreo._schemas import Catalog
from choreo._security.acl import service_grant
from services import shipping
from services.events import OrderApproved, ShipmentCreated

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"


def _writes(service: choreo.Service) -> set[str]:
    grant = service_grant(service, choreo.ServiceConfig(), Catalog.load(SCHEMAS))
    return {a.name for a in grant.acls if a.operation == "WRITE" and a.name.startswith("shop.")}


def test_without_a_declaration_the_topics_its_handlers_emit_to_are_granted() -> None:
    assert _writes(shipping.svc) == {"shop.shipping"}


def test_a_declaration_replaces_what_the_code_shows() -> None:
    declared = choreo.Service("declared", emits=[OrderApproved])

    @declared.on(OrderApproved)
    def ship(event: OrderApproved, ctx: choreo.Context) -> None:
        ctx.emit(ShipmentCreated.model_construct())

    assert _writes(declared) == {"shop.approvals"}


def test_a_schedule_may_read_and_write_its_own_topic() -> None:
    nightly = choreo.Service("nightly")

    @nightly.every(timedelta(minutes=5))
    def sweep(tick: choreo.Tick, ctx: choreo.Context) -> None: ...

    grant = service_grant(nightly, choreo.ServiceConfig(), Catalog.load(SCHEMAS))
    [schedule] = nightly.schedules
    on_its_topic = {a.operation for a in grant.acls if a.name == schedule.topic}
    assert on_its_topic == {"READ", "WRITE"}  # each tick writes the next alarm there
    assert schedule.topic in {t.name for t in grant.topics}
