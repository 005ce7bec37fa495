"""Finding the right dead letters among many: ``ls`` by service or glob with long names aligned,
``show --reason`` with a value preview, ``replay --dry-run`` listing each record, and a
misspelt ``--reason`` refused with the reasons that exist."""

from __future__ import annotations

import time

import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic
from dlq_kit import run_dlq

from choreo._runtime import dead_letters as dlq

pytestmark = pytest.mark.stack


def _park(kafka: str, topic: str, source: str, reasons: list[str]) -> None:
    """Dead letters as a foreign client writes them: one per reason, value ``body-<i>``."""
    admin = AdminClient({"bootstrap.servers": kafka})
    admin.create_topics([NewTopic(topic, 1, 1)])[topic].result(30)
    producer = Producer({"bootstrap.servers": kafka})
    for i, reason in enumerate(reasons):
        headers = [(dlq.REASON, reason.encode()), (dlq.TOPIC, source.encode())]
        value = b"\xc3\x01\xff\x02" if reason == "not-avro" else f"body-{i}".encode() * 20
        producer.produce(topic, key=f"k-{i}".encode(), value=value, headers=headers)
    assert producer.flush(30) == 0


def test_reason_filters_previews_dry_run_listing_and_ls_filters(kafka: str) -> None:
    run = time.time_ns()
    short = dlq.dlq_topic(f"filt-{run}", "shop.orders")
    long = dlq.dlq_topic(f"filt-{run}-with-a-service-name-longer-than-the-old-column", "shop.x")
    _park(kafka, short, "shop.orders", ["handler-error", "not-avro", "handler-error"])
    _park(kafka, long, "shop.x", ["invalid"])
    _park(kafka, f"choreo.dlq.nodot{run}", "x", ["invalid"])  # only looks like a DLQ topic

    shown = run_dlq(kafka, "show", short, "--reason", "not-avro")
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.count(f"{short}[0]@") == 1 and "reason   not-avro" in shown.stdout
    assert "value    hex c3 01 ff 02" in shown.stdout
    everything = run_dlq(kafka, "show", short, "--preview", "10").stdout
    assert "value    'body-0body' ... (120 bytes)" in everything

    misspelt = run_dlq(kafka, "show", short, "--reason", "handler_error")
    assert misspelt.returncode == 1
    assert "unknown --reason 'handler_error'" in misspelt.stderr
    assert "in this topic: handler-error, not-avro" in misspelt.stderr
    assert "known: " in misspelt.stderr and "too-large" in misspelt.stderr
    assert run_dlq(kafka, "replay", short, "--reason", "handler_eror").returncode == 1

    dry = run_dlq(kafka, "replay", short, "--reason", "handler-error", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    listed = [line.split() for line in dry.stdout.splitlines() if "->" in line]
    assert [(row[0], row[1]) for row in listed] == [
        (f"{short}[0]@0", "key=b'k-0'"),
        (f"{short}[0]@2", "key=b'k-2'"),
    ]
    assert all(row[-1] == "shop.orders" for row in listed)
    assert "3 selected" not in dry.stdout and "2 selected, would replay 2" in dry.stdout

    mine = run_dlq(kafka, "ls", "--service", f"filt-{run}").stdout.splitlines()
    assert [row.split()[:2] for row in mine[1:]] == [[short, "3"]]
    both = run_dlq(kafka, "ls", f"choreo.dlq.filt-{run}*").stdout.splitlines()
    assert [row.split()[:2] for row in both[1:]] == [[long, "1"], [short, "3"]]
    assert len({row.index(" 1 ") if " 1 " in row else row.index(" 3 ") for row in both[1:]}) == 1
    nothing = run_dlq(kafka, "ls", "--service", f"nobody-{run}")
    assert nothing.returncode == 0 and nothing.stdout.strip() == "no dead-letter topics"
