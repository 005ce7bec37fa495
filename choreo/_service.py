"""A service: a name and the handlers it runs, declared with decorators.

Declaring is separate from running (``choreo run`` / ``choreo.testing``), so a
service module imports cheaply and has no connection until it is run.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from choreo._errors import TopologyError
from choreo._retry import RetryPolicy
from choreo._schemas import Event

if TYPE_CHECKING:
    from choreo._context import Context

E = TypeVar("E", bound=Event)
HandlerFn = Callable[[Any, "Context"], Awaitable[None] | None]
F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class Batching:
    """Hand a batch handler up to ``max_size`` events, or what arrived within ``max_wait_s``."""

    max_size: int
    max_wait_s: float


@dataclass(frozen=True)
class Handler:
    """One decorated function and how to call it; built once, used per message."""

    name: str
    event: type[Event]
    fn: HandlerFn
    is_async: bool
    retry: RetryPolicy
    batching: Batching | None = None


class Service:
    """A named set of handlers; its name is also its consumer group and ``ce_source``."""

    def __init__(self, name: str, *, retry: RetryPolicy | None = None) -> None:
        if not name or not name.replace("-", "").replace("_", "").isalnum():
            raise TopologyError(f"service name {name!r} must be letters, digits, '-' or '_'")
        self.name = name
        self.retry = retry or RetryPolicy()
        self._handlers: dict[type[Event], Handler] = {}

    @property
    def handlers(self) -> Sequence[Handler]:
        return list(self._handlers.values())

    def handler_for(self, event: type[Event]) -> Handler | None:
        return self._handlers.get(event)

    def on(self, event: type[E], *, retry: RetryPolicy | None = None) -> Callable[[F], F]:
        """Run the decorated function (sync or async) for each ``event``."""
        return self._register(event, retry, None)

    def on_batch(
        self,
        event: type[E],
        *,
        max_size: int = 500,
        max_wait_s: float = 0.5,
        retry: RetryPolicy | None = None,
    ) -> Callable[[F], F]:
        """Run the decorated function with a list of events (bulk loads).

        Batches are per partition, so order within the batch is the partition's
        order; offsets are committed only after the whole batch succeeded.
        """
        if max_size < 1 or max_wait_s <= 0:
            raise ValueError("on_batch needs max_size >= 1 and max_wait_s > 0")
        return self._register(event, retry, Batching(max_size, max_wait_s))

    def _register(
        self, event: type[Event], retry: RetryPolicy | None, batching: Batching | None
    ) -> Callable[[F], F]:
        if not (isinstance(event, type) and issubclass(event, Event)):
            raise TopologyError(f"{self.name}: handlers take an Event subclass, got {event!r}")

        def decorate(fn: F) -> F:
            if event in self._handlers:
                raise TopologyError(
                    f"{self.name}: two handlers for {event.event_type}: "
                    f"{self._handlers[event].name} and {fn.__qualname__}"
                )
            self._handlers[event] = Handler(
                name=fn.__qualname__,
                event=event,
                fn=fn,
                is_async=inspect.iscoroutinefunction(fn),
                retry=retry or self.retry,
                batching=batching,
            )
            return fn

        return decorate

    def __repr__(self) -> str:
        return f"Service({self.name!r}, handlers={[h.name for h in self.handlers]})"
