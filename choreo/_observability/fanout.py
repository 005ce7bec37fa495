"""Several instrumentations behind the runtime's one seam (tracing and metrics together)."""

from __future__ import annotations

from collections.abc import Sequence

from choreo._runtime.instrument import Instrumentation, Scope
from choreo._service import Handler
from choreo._transport.base import Headers, Record


class Fanout:
    """Calls every part in order; scopes end in reverse order, like nested blocks.

    Put tracing first: its span is then current while the other parts open
    and close their scopes, and it ends last, covering their work.
    """

    __slots__ = ("parts",)

    def __init__(self, parts: Sequence[Instrumentation]) -> None:
        self.parts = tuple(parts)

    def consume(self, record: Record, handler: Handler | None) -> Scope:
        return _Scopes(tuple(part.consume(record, handler) for part in self.parts))

    def consume_batch(self, records: Sequence[Record], handler: Handler) -> Scope:
        return _Scopes(tuple(part.consume_batch(records, handler) for part in self.parts))

    def skipped(self, record: Record, event_type: str) -> None:
        for part in self.parts:
            part.skipped(record, event_type)

    def inject(self, headers: Headers) -> None:
        for part in self.parts:
            part.inject(headers)


class _Scopes:
    __slots__ = ("_scopes",)

    def __init__(self, scopes: tuple[Scope, ...]) -> None:
        self._scopes = scopes

    def retrying(self, attempt: int, error: BaseException) -> None:
        for scope in self._scopes:
            scope.retrying(attempt, error)

    def delayed(self, level: int, error: BaseException) -> None:
        for scope in self._scopes:
            scope.delayed(level, error)

    def parked(self, reason: str, error: BaseException) -> None:
        for scope in self._scopes:
            scope.parked(reason, error)

    def end(self, error: BaseException | None) -> None:
        for scope in reversed(self._scopes):
            scope.end(error)
