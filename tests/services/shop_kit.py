"""Helpers of the order services' tests."""

from __future__ import annotations

from dataclasses import replace

import choreo
from choreo import _headers
from choreo._transport.base import Record
from choreo.testing import TestService


def rebuilt(
    service: choreo.Service, *, without: tuple[type[choreo.Event], ...] = (), quick: bool = False
) -> choreo.Service:
    """``service``'s own handlers under its name and store, for what the real one cannot show
    within a test: ``without`` drops handlers (a consumer of its own scheduled topic holds the
    record for days), ``quick`` keeps every retry policy's number of tries but not its waits.
    """
    copy = choreo.Service(service.name, idempotency=service.idempotency)
    for handler in service.handlers:
        assert handler.event is not None, "the order services handle catalog events only"
        if handler.event in without:
            continue
        retry = handler.retry
        if quick:
            retry = replace(
                retry, initial_interval_s=0.01, delays_s=tuple(0.05 for _ in retry.delays_s)
            )
        copy.on(handler.event, retry=retry, guards=handler.guards)(handler.fn)
    return copy


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
