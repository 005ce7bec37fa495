"""The handler type: what the service API builds and the runtime and instrumentation call.

Its own module so that the runtime's pieces (instrumentation above all) can
name a handler without importing the service API that builds them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from choreo._guards import Guard
from choreo._retry import RetryPolicy
from choreo._schemas import Event
from choreo._transport.base import Record

if TYPE_CHECKING:
    from choreo._context import Context

HandlerFn = Callable[[Any, "Context"], Awaitable[None] | None]


@dataclass(frozen=True)
class Batching:
    """Hand a batch handler up to ``max_size`` events, or what arrived within ``max_wait_s``."""

    max_size: int
    max_wait_s: float


@dataclass(frozen=True)
class Handler:
    """One decorated function and how to call it; built once, used per message.

    An event handler has ``event`` and is fed by the catalog topic carrying it;
    a topic handler (CDC, foreign producers) has ``topic`` and its own
    ``decoder``, which raises ``DecodeError`` for a record it cannot read.
    """

    name: str
    event: type[Event] | None
    fn: HandlerFn
    is_async: bool
    retry: RetryPolicy
    batching: Batching | None = None
    topic: str | None = None
    decoder: Callable[[Record], Any] | None = None
    guards: tuple[Guard, ...] = ()
    """Circuit breakers and rate limits passed before every call."""
