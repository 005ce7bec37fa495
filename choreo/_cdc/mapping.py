"""From a row change to a domain event: ``ctx.emit(to_event(change))``.

CDC topics mirror tables, which are an implementation detail of the service
that owns them; other services should see domain events with a published
schema. A mapper is the small, explicit translation between the two.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from pydantic import BaseModel

from choreo._cdc.change import Change
from choreo._schemas import Event

E = TypeVar("E", bound=Event)


def mapper(
    event: type[E],
    *,
    rename: Mapping[str, str] | None = None,
    extra: Callable[[Change[Any]], Mapping[str, Any]] | None = None,
) -> Callable[[Change[Any]], E]:
    """A function turning a change into ``event``.

    The event's fields come from the change's current row (``after``, or
    ``before`` for a delete) with ``rename`` mapping column names to field
    names; columns the event does not declare are left out, so a column added
    to the table does not break the mapping. ``extra(change)`` supplies what
    the row does not hold (a timestamp, a status derived from ``op``) and wins
    over row values. The result is validated like any event, so a mapping that
    misses a required field fails in the handler (and is retried, then
    dead-lettered) rather than emitting a bad event.
    """
    columns = dict(rename or {})
    fields = {field.alias or name for name, field in event.model_fields.items()}
    fields |= set(event.model_fields)

    def to_event(change: Change[Any]) -> E:
        row = change.row
        values = row.model_dump() if isinstance(row, BaseModel) else dict(row)
        data = {columns.get(column, column): value for column, value in values.items()}
        data = {name: value for name, value in data.items() if name in fields}
        if extra is not None:
            data.update(extra(change))
        return event.model_validate(data)

    return to_event
