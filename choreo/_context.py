"""What a handler gets besides the event: its metadata and a way to emit."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from choreo import _headers
from choreo._outbound import Outbound
from choreo._schemas import Event
from choreo._transport.base import Record


class Context:
    """Per message; metadata is read from the headers only when asked for.

    ``emit`` only collects: the events are sent after the handler returns
    successfully, so a handler that fails and is retried never leaks a
    half-done set of events, and the offset is committed only once they are
    all delivered.
    """

    __slots__ = ("attempt", "db", "emitted", "prepared", "record", "service")

    def __init__(self, service: str, record: Record | None, attempt: int = 1) -> None:
        self.service = service
        self.record = record
        self.attempt = attempt
        self.emitted: list[tuple[Event, str | None, datetime | None]] = []
        self.prepared: list[Outbound] | None = None
        """Encoded emits, when idempotency stored (or replays) them."""
        self.db: Any = None
        """With an idempotency store: its connection, inside the transaction that records
        this event as handled. Write side effects here and they happen exactly once."""

    def emit(self, event: Event, *, key: str | None = None, at: datetime | None = None) -> None:
        """Publish ``event`` (after the handler succeeds), correlated with this message.

        ``key`` overrides the topic's key field (rarely needed). ``at`` (an aware datetime)
        delays handling until then, for topics declared ``scheduled = true``: the record is
        written now, so the timer survives any restart, and consumers hold it until due.
        """
        if not isinstance(event, Event):
            raise TypeError(f"emit() takes an Event, got {type(event).__name__}")
        self.emitted.append((event, key, at))

    def _header(self, name: str) -> str | None:
        if self.record is None:
            return None
        value = self.record.header(name)
        return value.decode() if value is not None else None

    @property
    def event_id(self) -> str | None:
        return self._header(_headers.ID)

    @property
    def event_type(self) -> str | None:
        return self._header(_headers.TYPE)

    @property
    def source(self) -> str | None:
        return self._header(_headers.SOURCE)

    @property
    def correlation_id(self) -> str | None:
        """The business transaction id. A record without one (a foreign client's) is
        correlated as choreo's own publishers would have: by its key, the business id, when
        it has a readable one, else by its event id."""
        return self._header(_headers.CORRELATION) or self._key() or self.event_id

    def _key(self) -> str | None:
        try:
            return self.record.key.decode() if self.record and self.record.key else None
        except UnicodeDecodeError:
            return None

    @property
    def causation_id(self) -> str | None:
        return self._header(_headers.CAUSATION)
