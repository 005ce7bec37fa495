"""Helpers of the order services' tests."""

from __future__ import annotations

import choreo
from choreo import _headers
from choreo._transport.base import Record
from choreo.testing import TestService


def redeliver(t: TestService, record: Record) -> None:
    """Publish ``record`` again, id and all, as Kafka does after a crash before the commit."""
    t.send_raw(record.topic, record.value, key=record.key, headers=record.headers)


def emitted_ids(t: TestService, event_type: type[choreo.Event]) -> list[str]:
    """The ``ce_id`` of each ``event_type`` the service emitted: a replay keeps its id."""
    wanted = event_type.event_type.encode()
    topic = t.catalog.topic_of(event_type.event_type).name
    return [
        (record.header(_headers.ID) or b"").decode()
        for record in t.records(topic)
        if record.header(_headers.TYPE) == wanted
    ]
