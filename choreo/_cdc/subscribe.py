"""``Service.on_change``: a row-change handler is a topic handler with a Debezium decoder.

Built on ``Service.on_topic``, so change topics get everything event topics
get from the runtime: per-key order, retries, dead letters
(``choreo.dlq.<service>.<change topic>``), commits and tracing hooks.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from pydantic import BaseModel

from choreo._cdc.change import change_decoder
from choreo._retry import RetryPolicy
from choreo._transport.base import Record

if TYPE_CHECKING:
    from choreo._context import Context

F = TypeVar("F", bound=Callable[..., Any])


class TopicRegistrar(Protocol):
    """What CDC needs of a service: its public ``on_topic`` registration.

    A protocol rather than ``Service`` itself, so that CDC does not import the
    service API that calls it (``Service.on_change``).
    """

    def on_topic(
        self,
        topic: str,
        decoder: Callable[[Record], Any],
        *,
        retry: RetryPolicy | None = None,
        max_size: int | None = None,
        max_wait_s: float = 0.5,
    ) -> Callable[[F], F]: ...


def on_change(
    service: TopicRegistrar,
    table: str,
    topic: str,
    *,
    model: type[BaseModel] | None = None,
    retry: RetryPolicy | None = None,
    max_size: int | None = None,
    max_wait_s: float = 0.5,
) -> Callable[[F], F]:
    """Register the decorated function for changes of ``table``, read from ``topic``.

    With ``max_size`` the function gets lists of up to that many changes
    (batches as with ``on_batch``) and a ``BatchContext``. Tombstones decode
    to None and never reach the function: they are left out of a batch, and
    a batch of nothing but tombstones is not handed over at all.
    """
    if max_size is not None and (max_size < 1 or max_wait_s <= 0):
        raise ValueError(f"on_change({table!r}) needs max_size >= 1 and max_wait_s > 0")
    register = service.on_topic(
        topic,
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
