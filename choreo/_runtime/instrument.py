"""The seam for tracing and metrics: sync hooks around each record, no per-record coroutines.

The runtime calls these only when instrumentation is configured, so a service
without tracing or metrics pays one ``is None`` check per record. A scope is
opened after routing and closed when the record's fate is known; it stays the
current context while the handler runs and its events are emitted, which is
how emitted events inherit the trace.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

from choreo._transport.base import Headers, Record

if TYPE_CHECKING:
    from choreo._handler import Handler


class Scope(Protocol):
    """One record (or one batch) from routing to its fate."""

    def retrying(self, attempt: int, error: BaseException) -> None:
        """Try ``attempt`` failed with ``error``; another try follows."""

    def delayed(self, level: int, error: BaseException) -> None:
        """The record goes to the retry topic of ``level`` (read again from there)."""

    def parked(self, reason: str, error: BaseException) -> None:
        """The record goes to the dead-letter topic."""

    def end(self, error: BaseException | None) -> None:
        """Handled (``None``) or given up on; always called exactly once."""


class Instrumentation(Protocol):
    def consume(self, record: Record, handler: Handler | None) -> Scope:
        """``handler`` is None for a record that could not be decoded (poison)."""

    def consume_batch(self, records: Sequence[Record], handler: Handler) -> Scope:
        """One scope for a batch handler call, linked to every record's context."""

    def skipped(self, record: Record, event_type: str) -> None:
        """A record of a type its topic carries and this service has no handler for."""

    def inject(self, headers: Headers) -> None:
        """Add the current trace context to outgoing headers (emits, retries, dead letters)."""
