"""Request signing as a sender and the ingress see it (no server, no broker)."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from choreo import ConfigError, load_config
from choreo._ingress import Rejection, ReplayCache, Verifier, parse_route
from choreo.ingress import SIGNATURE_HEADER, TIMESTAMP_HEADER, sign

BODY = b'{"order_id": "o-1"}'


def test_the_signature_is_the_documented_hmac_of_timestamp_and_body() -> None:
    headers = sign("s3cret", BODY, 1_763_776_800)
    expected = hmac.new(b"s3cret", b"1763776800." + BODY, hashlib.sha256).hexdigest()
    assert headers == {TIMESTAMP_HEADER: "1763776800", SIGNATURE_HEADER: f"v1={expected}"}


def test_a_signed_request_verifies_within_the_tolerance_and_not_beyond() -> None:
    verifier = Verifier("s3cret", tolerance_s=300)
    headers = sign("s3cret", BODY, 1000)
    args = (headers[TIMESTAMP_HEADER], headers[SIGNATURE_HEADER], BODY)
    assert verifier.verify(*args, now=1300) == 1000
    with pytest.raises(Rejection, match=r"\+301s off; at most 300s") as stale:
        verifier.verify(*args, now=1301)
    assert stale.value.status == 401


def test_a_seen_signature_is_refused_until_its_timestamp_is_stale_anyway() -> None:
    cache = ReplayCache(tolerance_s=300)
    cache.reserve("v1=a", timestamp=1000, now=1000)
    with pytest.raises(Rejection) as replay:
        cache.reserve("v1=a", timestamp=1000, now=1299)
    assert replay.value.status == 409
    cache.reserve("v1=b", timestamp=1400, now=1400)  # later traffic forgets what expired
    assert len(cache) == 1


def test_a_released_signature_may_be_sent_again() -> None:
    cache = ReplayCache(tolerance_s=300)
    cache.reserve("v1=a", timestamp=1000, now=1000)
    cache.release("v1=a")
    cache.reserve("v1=a", timestamp=1000, now=1001)


def test_ingress_settings_come_from_env_and_the_secret_stays_hidden() -> None:
    config = load_config(
        environ={"CHOREO_INGRESS__SECRET": "s3cret", "CHOREO_INGRESS__PORT": "9000"}
    )
    assert config.ingress.port == 9000
    assert "s3cret" not in repr(config)
    assert repr(Verifier("s3cret")) == "Verifier(secret=***, tolerance_s=300)"


def test_a_route_names_its_method_path_and_event_type() -> None:
    assert parse_route("POST /orders=shop.orders.OrderReceived") == (
        "POST /orders",
        "shop.orders.OrderReceived",
    )
    with pytest.raises(ConfigError, match=r"expected 'METHOD /path=event\.Type'"):
        parse_route("POST /orders")
