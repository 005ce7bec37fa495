"""Request signing as a sender and the ingress see it (no server, no broker)."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import uuid

import pytest

from choreo import ConfigError, load_config
from choreo._ingress import (
    Rejection,
    ReplayCache,
    Verifier,
    event_id_of,
    legacy_signature,
    parse_route,
)
from choreo.ingress import SIGNATURE_HEADER, TIMESTAMP_HEADER, sign

BODY = b'{"order_id": "o-1"}'


def test_the_signature_is_the_documented_hmac_of_timestamp_method_target_and_body() -> None:
    headers = sign("s3cret", BODY, method="post", target="/orders?a=1", timestamp=1_763_776_800)
    signed = b"v2\n1763776800\nPOST\n/orders?a=1\n" + BODY
    expected = hmac.new(b"s3cret", signed, hashlib.sha256).hexdigest()
    assert headers == {TIMESTAMP_HEADER: "1763776800", SIGNATURE_HEADER: f"v2={expected}"}


def test_a_signed_request_verifies_within_the_tolerance_and_not_beyond() -> None:
    verifier = Verifier("s3cret", tolerance_s=300)
    headers = sign("s3cret", BODY, method="POST", target="/orders", timestamp=1000)
    args = (headers[TIMESTAMP_HEADER], headers[SIGNATURE_HEADER], BODY)
    assert verifier.verify(*args, now=1300, method="POST", target="/orders") == 1000
    with pytest.raises(Rejection, match=r"\+301s off; at most 300s") as stale:
        verifier.verify(*args, now=1301, method="POST", target="/orders")
    assert stale.value.status == 401


def test_v1_is_refused_unless_accepted_for_the_migration() -> None:
    v1 = legacy_signature("s3cret", BODY, 1000)
    expected = hmac.new(b"s3cret", b"1000." + BODY, hashlib.sha256).hexdigest()
    assert v1 == f"v1={expected}"
    where = {"method": "POST", "target": "/anything"}  # v1 never covered them
    with pytest.raises(Rejection, match="v1= is no longer accepted"):
        Verifier("s3cret").verify("1000", v1, BODY, now=1000, **where)
    assert Verifier("s3cret", accept_v1=True).verify("1000", v1, BODY, now=1000, **where) == 1000


def test_the_event_id_is_the_same_for_the_same_signed_request_only() -> None:
    one = sign("s3cret", BODY, method="POST", target="/orders", timestamp=1000)
    two = sign("s3cret", BODY, method="POST", target="/orders", timestamp=1001)
    assert event_id_of(one[SIGNATURE_HEADER]) == event_id_of(one[SIGNATURE_HEADER])
    assert event_id_of(one[SIGNATURE_HEADER]) != event_id_of(two[SIGNATURE_HEADER])
    assert uuid.UUID(event_id_of(one[SIGNATURE_HEADER])).version == 5


def test_a_seen_signature_is_refused_until_its_timestamp_is_stale_anyway() -> None:
    async def scenario() -> None:
        cache = ReplayCache(tolerance_s=300)
        await cache.reserve("v2=a", timestamp=1000, now=1000)
        with pytest.raises(Rejection) as replay:
            await cache.reserve("v2=a", timestamp=1000, now=1299)
        assert replay.value.status == 409
        await cache.reserve("v2=b", timestamp=1400, now=1400)  # later traffic forgets the old
        assert len(cache) == 1

    asyncio.run(scenario())


def test_a_released_signature_may_be_sent_again() -> None:
    async def scenario() -> None:
        cache = ReplayCache(tolerance_s=300)
        await cache.reserve("v2=a", timestamp=1000, now=1000)
        await cache.release("v2=a")
        await cache.reserve("v2=a", timestamp=1000, now=1001)

    asyncio.run(scenario())


def test_ingress_settings_come_from_env_and_the_secret_stays_hidden() -> None:
    config = load_config(
        environ={"CHOREO_INGRESS__SECRET": "s3cret", "CHOREO_INGRESS__PORT": "9000"}
    )
    assert config.ingress.port == 9000
    assert "s3cret" not in repr(config)
    assert repr(Verifier("s3cret")) == "Verifier(secret=***, tolerance_s=300, accept_v1=False)"


def test_a_route_names_its_method_path_and_event_type() -> None:
    assert parse_route("POST /orders=shop.orders.OrderReceived") == (
        "POST /orders",
        "shop.orders.OrderReceived",
    )
    with pytest.raises(ConfigError, match=r"expected 'METHOD /path=event\.Type'"):
        parse_route("POST /orders")
