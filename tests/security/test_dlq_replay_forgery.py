"""A service principal forges dead letters in the one DLQ topic it may write, hoping an admin's
routine ``choreo dlq replay`` publishes them where the service itself is refused. The replay
sends records only where the DLQ topic's name says they came from and refuses the forged ones,
naming the header; ``--to-topic`` redirects on purpose. Hostile header bytes cannot crash the
tools that read them."""

from __future__ import annotations

import os
import random
import uuid

import pytest
from confluent_kafka import KafkaError, Producer
from conftest import Secured

from choreo._dlq.reader import DeadLetter, read
from choreo._dlq.replay import REPLAYED_FROM
from choreo._runtime import dead_letters as dlq
from choreo._runtime.dead_letters import dlq_topic
from choreo._schemas import Catalog
from choreo._transport.base import Headers
from choreo._transport.confluent import librdkafka_settings
from services.events import OrderPlaced, PaymentAuthorized

pytestmark = pytest.mark.stack


def _write_as(
    secured: Secured, user: str, topic: str, records: list[tuple[bytes, Headers]]
) -> None:
    """Produce with a plain confluent-kafka client as ``user``; fails on any delivery error."""
    assert _try_write_as(secured, user, topic, records) == []


def _try_write_as(
    secured: Secured, user: str, topic: str, records: list[tuple[bytes, Headers]]
) -> list[KafkaError]:
    """The delivery errors of producing ``records`` as ``user``."""
    config = secured.secure.config(user, secured.passwords[user])
    producer = Producer(librdkafka_settings(config))
    errors: list[KafkaError] = []
    for key, headers in records:
        producer.produce(
            topic,
            key=key,
            value=b"forged body",
            headers=headers,
            on_delivery=lambda error, _: errors.append(error) if error else None,
        )
    assert producer.flush(30) == 0
    return errors


def _topics(secured: Secured) -> tuple[str, str, str]:
    """The stock service's name (its principal), its DLQ of orders, and the payments topic."""
    stock = secured.user("stock")
    applied = secured.admin("acl", "apply", "secure_services:stock")
    assert applied.returncode == 0, applied.stderr
    catalog = Catalog.load(secured.schemas)
    orders = catalog.topic_of(OrderPlaced.event_type).name
    return stock, dlq_topic(stock, orders), catalog.topic_of(PaymentAuthorized.event_type).name


def _admin_read(secured: Secured, topic: str) -> list[DeadLetter]:
    return list(read(librdkafka_settings(secured.secure.admin()), topic))


def test_a_forged_destination_is_refused_and_never_reaches_the_other_teams_topic(
    secured: Secured,
) -> None:
    stock, parked, payments = _topics(secured)
    orders = parked.removeprefix(f"choreo.dlq.{stock}.")
    forged: Headers = [
        ("ce_type", PaymentAuthorized.event_type.encode()),
        ("ce_source", b"payments"),
        (dlq.REASON, b"handler-error"),
        (dlq.TOPIC, payments.encode()),
    ]
    honest: Headers = [(dlq.REASON, b"handler-error"), (dlq.TOPIC, orders.encode())]
    headerless: Headers = [(dlq.REASON, b"handler-error")]
    _write_as(secured, stock, parked, [(b"f-1", forged), (b"h-1", honest), (b"n-1", headerless)])
    payments_before = len(_admin_read(secured, payments))

    replayed = secured.admin("dlq", "replay", parked)
    assert replayed.returncode == 1, replayed.stdout + replayed.stderr
    refused = _refusals(replayed.stderr)
    assert len(refused) == 2, replayed.stderr
    assert any(f"choreo_dlq_topic header names '{payments}'" in line for line in refused)
    assert any("choreo_dlq_topic header names None" in line for line in refused)
    assert all(f"come from '{orders}'" in line and "--to-topic" in line for line in refused)
    assert replayed.stdout.strip() == (
        f"3 selected, replayed 1 to {orders}, 0 already replayed before, 2 refused"
    )
    assert len(_admin_read(secured, payments)) == payments_before
    [back] = [r for r in _admin_read(secured, orders) if r.header(REPLAYED_FROM)]
    assert back.key == b"h-1"

    again = secured.admin("dlq", "replay", parked)  # still refused, never sent later either
    assert again.returncode == 1 and "1 already replayed before, 2 refused" in again.stdout

    redirect = secured.admin("dlq", "replay", parked, "--to-topic", orders, "--dry-run")
    assert redirect.returncode == 0, redirect.stderr
    assert f"3 selected, would replay 2 to {orders}" in redirect.stdout
    assert sum(f"-> {orders}" in line for line in redirect.stdout.splitlines()) == 2
    assert len(_admin_read(secured, payments)) == payments_before


def test_hostile_header_bytes_cannot_crash_show_ls_or_replay(secured: Secured) -> None:
    seed = int(os.environ.get("CHOREO_TEST_SEED", random.randrange(2**32)))
    print(f"seed {seed} (CHOREO_TEST_SEED reruns it)")
    rng = random.Random(seed)
    stock, parked, _ = _topics(secured)
    names = (dlq.FAILED_AT, dlq.REASON, dlq.TOPIC, dlq.ERROR_TYPE, dlq.ATTEMPTS, "ce_type")
    records: list[tuple[bytes, Headers]] = [
        (b"k", [(name, b"\xff\xfe\x00\x80\x1b[2J") for name in names]),
        (b"k", [(dlq.FAILED_AT, b"2026-02-30T25:61:00"), (dlq.REASON, b"handler-error")]),
        *(
            (uuid.uuid4().bytes, [(n, rng.randbytes(rng.randrange(40))) for n in names])
            for _ in range(20)
        ),
    ]
    _write_as(secured, stock, parked, records)

    shown = secured.admin("dlq", "show", parked, "--limit", "100")
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.count(f"{parked}[") == len(records)
    assert "\x1b" not in shown.stdout
    listed = secured.admin("dlq", "ls", parked)
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.splitlines()[1].split()[:2] == [parked, str(len(records))]
    dry = secured.admin("dlq", "replay", parked, "--dry-run", "--since", "2000-01-01")
    assert "Traceback" not in dry.stderr, dry.stderr
    assert f"{len(records)} selected, would replay 0 to " in dry.stdout
    assert len(_refusals(dry.stderr)) == len(records)  # every one refused, with its line


def test_the_owning_principal_replays_its_own_dead_letters_and_can_reach_nothing_else(
    secured: Secured,
) -> None:
    stock = secured.user("stock")
    applied = secured.admin("acl", "apply", "--replay", "secure_services:stock")
    assert applied.returncode == 0, applied.stderr
    catalog = Catalog.load(secured.schemas)
    orders = catalog.topic_of(OrderPlaced.event_type).name
    payments = catalog.topic_of(PaymentAuthorized.event_type).name
    parked = dlq_topic(stock, orders)
    assert f"READ  topic {parked}" in applied.stdout
    assert f"WRITE transactional_id choreo-dlq-replay-{parked}" in applied.stdout
    honest: Headers = [(dlq.REASON, b"handler-error"), (dlq.TOPIC, orders.encode())]
    forged: Headers = [(dlq.REASON, b"handler-error"), (dlq.TOPIC, payments.encode())]
    _write_as(secured, stock, parked, [(b"h-1", honest), (b"f-1", forged)])
    payments_before = len(_admin_read(secured, payments))

    as_stock = secured.as_user(stock)
    replayed = secured.choreo("dlq", "replay", parked, env=as_stock)
    assert replayed.returncode == 1, replayed.stdout + replayed.stderr
    assert f"2 selected, replayed 1 to {orders}, 0 already replayed before, 1 refused" in (
        replayed.stdout
    )
    redirect = secured.choreo("dlq", "replay", parked, "--to-topic", payments, env=as_stock)
    assert redirect.returncode == 1, redirect.stdout + redirect.stderr
    [denied] = [line for line in redirect.stderr.splitlines() if line.startswith("choreo: ")]
    assert f"replaying {parked} to {payments}" in denied and "uthoriz" in denied, denied
    assert len(_admin_read(secured, payments)) == payments_before
    for ledger in ("choreo.dlq-replays", f"choreo.dlq-replays.{secured.prefix}payments"):
        marker = [(f"{dlq_topic(f'{secured.prefix}payments', orders)}/0/0".encode(), [])]
        [refused] = _try_write_as(secured, stock, ledger, marker)  # others' marks are not its
        assert refused.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED, ledger


def test_reading_a_dlq_without_read_rights_is_refused_naming_it(secured: Secured) -> None:
    stock, parked, _ = _topics(secured)  # no --replay: stock may write its DLQ, not read it
    _write_as(secured, stock, parked, [(b"k", [(dlq.REASON, b"handler-error")])])
    for command in ("show", "replay"):
        result = secured.choreo("dlq", command, parked, env=secured.as_user(stock))
        assert result.returncode == 1, result.stdout + result.stderr
        [line] = [line for line in result.stderr.splitlines() if line.startswith("choreo: ")]
        assert "uthoriz" in line and "choreo acl apply --replay" in line, result.stderr
        assert parked in line or command == "replay"  # replay stops at the ledger it needs


def _refusals(stderr: str) -> list[str]:
    """The replay's refusal lines; librdkafka may log other lines (a closed TLS link) there."""
    return [line for line in stderr.splitlines() if ": refused, " in line]
