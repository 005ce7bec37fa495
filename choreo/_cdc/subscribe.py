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
    max_size: int | None = None,
    max_wait_s: float = 0.5,
) -> Callable[[F], F]:
    """Register the decorated function for changes of ``table`` captured by ``source``.

    With ``max_size`` the function gets lists of up to that many changes
    (batches as with ``on_batch``) and a ``BatchContext``. Tombstones decode
    to None and never reach the function: they are left out of a batch, and
    a batch of nothing but tombstones is not handed over at all.
    """
    if not isinstance(source, CdcSource):
        raise TopologyError(
            f"{service.name}: on_change({table!r}) needs source=CdcSource(...), got {source!r}"
        )
    if max_size is not None and (max_size < 1 or max_wait_s <= 0):
        raise ValueError(f"on_change({table!r}) needs max_size >= 1 and max_wait_s > 0")
    register = service.on_topic(
        source.topic_of(table),
        change_decoder(model),
        retry=retry,
        max_size=max_size,
        max_wait_s=max_wait_s,
    )
    prepare = _single if max_size is None else _batch

    def decorate(fn: F) -> F:
        register(_skipping_tombstones(fn, prepare))
        return fn

    return decorate


def _single(change: Any) -> Any:
    return change


def _batch(changes: list[Any]) -> list[Any] | None:
    return [change for change in changes if change is not None] or None


def _skipping_tombstones(
    fn: Callable[..., Any], prepare: Callable[[Any], Any]
) -> Callable[..., Any]:
    """The handler, given ``prepare(arg)`` and not called when that is None.

    Stays async if it was (the runtime awaits by that).
    """
    if inspect.iscoroutinefunction(fn):

        @functools.wraps(fn)
        async def handle_async(arg: Any, ctx: Context) -> None:
            prepared = prepare(arg)
            if prepared is not None:
                await fn(prepared, ctx)

        return handle_async

    @functools.wraps(fn)
    def handle(arg: Any, ctx: Context) -> None:
        prepared = prepare(arg)
        if prepared is not None:
            fn(prepared, ctx)

    return handle
