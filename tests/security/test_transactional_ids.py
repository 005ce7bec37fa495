"""Exactly-once services whose names share a prefix: with the grants ``choreo acl`` computes
applied, service ``<p>a`` may start transactions under its own ids and not under ``<p>a-b``'s
(the old ``choreo-<group>-`` prefix reached them and could fence ``a-b``)."""

from __future__ import annotations

import time

import confluent_kafka as ck
import pytest
from conftest import Secured

import choreo
from choreo._config import ServiceConfig, transactional_id
from choreo._schemas import Catalog
from choreo._security.acl import service_grant
from choreo._security.acl_admin import AclAdmin
from choreo._transport.confluent import librdkafka_settings
from services.events import OrderPlaced

pytestmark = pytest.mark.stack


def _init_transactions(settings: dict[str, object], tid: str) -> ck.KafkaError | None:
    """The broker's answer to ``init_transactions`` as ``tid`` (None: allowed)."""
    producer = ck.Producer({**settings, "transactional.id": tid})
    try:
        producer.init_transactions(15)
    except ck.KafkaException as error:
        return error.args[0]  # type: ignore[no-any-return]
    return None


def test_a_service_cannot_use_the_transactional_ids_of_a_service_its_name_prefixes(
    secured: Secured,
) -> None:
    catalog = Catalog.load(secured.schemas)
    config = ServiceConfig(exactly_once=True, schemas_dir=secured.schemas)
    names = [f"{secured.prefix}a", f"{secured.prefix}a-b"]
    services = [choreo.Service(name) for name in names]
    for service in services:
        service.on(OrderPlaced)(lambda event, ctx: None)
    grants = [service_grant(s, config, catalog, f"User:{s.name}") for s in services]
    for name in names:
        secured.user(name.removeprefix(secured.prefix))
    AclAdmin(secured.secure.admin()).create(a for g in grants for a in g.acls)

    user = names[0]
    settings = librdkafka_settings(secured.secure.config(user, secured.passwords[user]))
    deadline = time.monotonic() + 30
    while (own := _init_transactions(settings, transactional_id(names[0], "i1"))) is not None:
        assert time.monotonic() < deadline, f"{user} may not use its own ids: {own.str()}"
        time.sleep(0.5)
    theirs = _init_transactions(settings, transactional_id(names[1], "i1"))
    assert theirs is not None, f"{user} initialised transactions as {names[1]}'s instance"
    assert theirs.code() == ck.KafkaError.TRANSACTIONAL_ID_AUTHORIZATION_FAILED, theirs.str()
