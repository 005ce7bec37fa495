"""The base classes of event models.

Models are frozen because an event is a fact: a handler that could mutate the event it received
could make its retries and the events it emits disagree. ``extra="forbid"`` makes a typo in a
field name an error where the event is built instead of a silently dropped value.
"""

from __future__ import annotations

from typing import ClassVar

from pydantic import BaseModel, ConfigDict


class Record(BaseModel):
    """Base of nested Avro records: as immutable and strict as events."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class Event(Record):
    """Base of every event model; ``event_type`` is the Avro full name of its schema."""

    event_type: ClassVar[str]
