"""Where a dead-letter topic's records belong, read from the topic's own name.

``choreo.dlq.<owner>.<source topic>``: owners (service names, ``choreo-saga-<saga>``)
cannot contain a dot (``choreo._service.check_name``), so the first dot after the
prefix ends the owner and the rest is the source topic, whatever dots it holds. The
name is set by whoever created the topic (``choreo acl apply``, an admin); the
``choreo_dlq_topic`` header is set by whoever wrote the record, which is why a
replay trusts the name and not the header.
"""

from __future__ import annotations

from typing import NamedTuple

from choreo._errors import TransportError
from choreo._runtime.dead_letters import PREFIX


class DlqName(NamedTuple):
    owner: str
    """The service (or ``choreo-saga-<saga>`` tracker) that parked the records."""
    source: str
    """The topic the records were read from, where a replay sends them."""


def parse(dlq_topic: str) -> DlqName:
    """The owner and source topic of ``dlq_topic``; an error naming it if it is no DLQ topic."""
    owner, dot, source = dlq_topic.removeprefix(PREFIX).partition(".")
    if not dlq_topic.startswith(PREFIX) or not owner or not dot or not source:
        raise TransportError(
            f"{dlq_topic} is not a dead-letter topic (choreo.dlq.<service>.<source topic>)"
        )
    return DlqName(owner, source)
