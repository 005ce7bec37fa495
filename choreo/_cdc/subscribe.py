"""``Service.on_change``: a row-change handler is a topic handler with a Debezium decoder.

Built on ``Service.on_topic``, so change topics get everything event topics
get from the runtime: per-key order, retries, dead letters
(``choreo.dlq.<service>.<change topic>``), commits and tracing hooks.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import BaseModel

from choreo._cdc.change import change_decoder
from choreo._cdc.source import CdcSource
from choreo._errors import TopologyError
from choreo._retry import RetryPolicy

if TYPE_CHECKING:
    from choreo._context import Context
    from choreo._service import Service

F = TypeVar("F", bound=Callable[..., Any])


def on_change(
    service: Service,
    table: str,
    *,
    source: CdcSource,
    model: type[BaseModel] | None = None,
    retry: RetryPolicy | None = None,
) -> Callable[[F], F]:
    """Register the decorated function for changes of ``table`` captured by ``source``.

    Tombstones decode to None and never reach the function.
    """
    if not isinstance(source, CdcSource):
        raise TopologyError(
            f"{service.name}: on_change({table!r}) needs source=CdcSource(...), got {source!r}"
        )
    register = service.on_topic(source.topic_of(table), change_decoder(model), retry=retry)

    def decorate(fn: F) -> F:
        register(_skipping_tombstones(fn))
        return fn

    return decorate


def _skipping_tombstones(fn: Callable[..., Any]) -> Callable[..., Any]:
    """The handler, not called for None; stays async if it was (the runtime awaits by that)."""
    if inspect.iscoroutinefunction(fn):

        @functools.wraps(fn)
        async def handle_async(change: Any, ctx: Context) -> None:
            if change is not None:
                await fn(change, ctx)

        return handle_async

    @functools.wraps(fn)
    def handle(change: Any, ctx: Context) -> None:
        if change is not None:
            fn(change, ctx)

    return handle
