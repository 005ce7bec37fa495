"""A service: a name and the handlers it runs, declared with decorators.

Declaring is separate from running (``choreo run`` / ``choreo.testing``), so a
service module imports cheaply and has no connection until it is run.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from choreo._config import NAME_CHARACTERS, is_plain_name
from choreo._errors import TopologyError
from choreo._guards import Guard
from choreo._handler import Batching, Handler
from choreo._retry import RetryPolicy
from choreo._schedule import Schedule, cadence
from choreo._schemas import Event
from choreo._transport.base import Record

if TYPE_CHECKING:
    from pydantic import BaseModel

    from choreo._runtime.idempotency import IdempotencyStore

__all__ = ["Batching", "Handler", "Service"]
"""``Handler`` and ``Batching`` live in ``_handler``; they are named here too, where the
runtime has always imported them from."""

E = TypeVar("E", bound=Event)
F = TypeVar("F", bound=Callable[..., Any])


class ChangeSource(Protocol):
    """What ``on_change`` subscribes through: a ``choreo.cdc.CdcSource``, which registers the
    handler with ``on_topic``, so the service API does not import CDC (CDC builds on it)."""

    def subscribe(
        self,
        service: Service,
        table: str,
        *,
        model: type[BaseModel] | None,
        retry: RetryPolicy | None,
        max_size: int | None,
        max_wait_s: float,
    ) -> Callable[[F], F]: ...


class Service:
    """A named set of handlers; its name is also its consumer group and ``ce_source``."""

    def __init__(
        self,
        name: str,
        *,
        retry: RetryPolicy | None = None,
        idempotency: IdempotencyStore | None = None,
        emits: Sequence[type[Event]] = (),
    ) -> None:
        if not is_plain_name(name):
            raise TopologyError(f"service name {name!r} must be {NAME_CHARACTERS}")
        self.name = name
        self.retry = retry or RetryPolicy()
        self.idempotency = idempotency
        """Where handled event ids (and what they emitted) are remembered; see ``ctx.db``."""
        self.emits = tuple(emits)
        """The event types its handlers emit: ``choreo acl plan`` grants write on their topics
        (and only those), so on a cluster with ACLs an undeclared emit is refused."""
        self._handlers: dict[type[Event] | str, Handler] = {}
        self._schedules: dict[str, Schedule] = {}

    @property
    def handlers(self) -> Sequence[Handler]:
        return list(self._handlers.values())

    @property
    def schedules(self) -> Sequence[Schedule]:
        """What ``every`` declared; the runner creates their topics and starts their alarms."""
        return list(self._schedules.values())

    def handler_for(self, event: type[Event] | str) -> Handler | None:
        """The handler of an event class, or of a topic for topic handlers."""
        return self._handlers.get(event)

    def on(
        self,
        event: type[E],
        *,
        retry: RetryPolicy | None = None,
        guards: Sequence[Guard] = (),
    ) -> Callable[[F], F]:
        """Run the decorated function (sync or async) for each ``event``.

        ``guards`` (a ``CircuitBreaker``, a ``RateLimit``) are passed before each
        call; while one is shut the partition waits instead of calling.
        """
        return self._register(event, retry, None, guards=tuple(guards))

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

    def on_topic(
        self,
        topic: str,
        decoder: Callable[[Record], Any],
        *,
        retry: RetryPolicy | None = None,
        max_size: int | None = None,
        max_wait_s: float = 0.5,
    ) -> Callable[[F], F]:
        """Handle a topic outside the Avro catalog (e.g. Debezium change topics).

        ``decoder`` turns each record into what the handler receives and raises
        ``DecodeError`` for one it cannot read (it is then dead-lettered).
        With ``max_size`` the handler gets lists, as with ``on_batch``.
        """
        batching = Batching(max_size, max_wait_s) if max_size else None
        return self._register(topic, retry, batching, decoder)

    def every(
        self,
        when: str | timedelta,
        *,
        tz: str | None = None,
        name: str | None = None,
        retry: RetryPolicy | None = None,
    ) -> Callable[[F], F]:
        """Run the decorated function once per tick, on one instance of the service.

        ``when`` is a cron line (``"0 2 * * *"``, read in ``tz``, UTC by default;
        six fields put seconds first) or a ``timedelta`` (ticks on multiples of it
        since the epoch). The function gets a ``choreo.Tick`` and a ``Context``;
        ticks are records of ``choreo.schedule.<service>.<name>`` (``name``: the
        function's), with the retries, dead letters, tracing and idempotency of
        any handler. A tick missed while no instance ran runs once on return,
        the latest one, with ``Tick.skipped`` counting those before it.
        """
        plan = cadence(when, tz)

        def decorate(fn: F) -> F:
            label = name or fn.__name__
            if not is_plain_name(label):
                raise TopologyError(
                    f"{self.name}: schedule name {label!r} must be {NAME_CHARACTERS}"
                )
            schedule = Schedule(self.name, label, plan)
            if label in self._schedules:
                raise TopologyError(f"{self.name}: two schedules named {label!r}")
            self._register(schedule.topic, retry, None, schedule.decode)(schedule.handler(fn))
            self._schedules[label] = schedule
            return fn

        return decorate

    def on_change(
        self,
        table: str,
        *,
        source: ChangeSource,
        model: type[BaseModel] | None = None,
        retry: RetryPolicy | None = None,
        max_size: int | None = None,
        max_wait_s: float = 0.5,
    ) -> Callable[[F], F]:
        """Handle row changes of ``table`` ("schema.table") captured by a ``choreo.cdc.CdcSource``.

        The function gets a ``choreo.cdc.Change`` whose rows are dicts, or
        ``model`` instances; see ``choreo.cdc`` (imported only when used).
        With ``max_size`` it gets lists of changes and a ``choreo.BatchContext``
        (bulk loads), batched as with ``on_batch``.
        """
        if not callable(getattr(source, "subscribe", None)):
            raise TopologyError(
                f"{self.name}: on_change({table!r}) needs source=CdcSource(...), got {source!r}"
            )
        return source.subscribe(
            self, table, model=model, retry=retry, max_size=max_size, max_wait_s=max_wait_s
        )

    def _register(
        self,
        key: type[Event] | str,
        retry: RetryPolicy | None,
        batching: Batching | None,
        decoder: Callable[[Record], Any] | None = None,
        guards: tuple[Guard, ...] = (),
    ) -> Callable[[F], F]:
        if isinstance(key, str):
            event, topic, label = None, key, f"topic {key}"
        elif isinstance(key, type) and issubclass(key, Event):
            event, topic, label = key, None, key.event_type
        else:
            raise TopologyError(f"{self.name}: handlers take an Event subclass, got {key!r}")

        def decorate(fn: F) -> F:
            if key in self._handlers:
                raise TopologyError(
                    f"{self.name}: two handlers for {label}: "
                    f"{self._handlers[key].name} and {fn.__qualname__}"
                )
            self._handlers[key] = Handler(
                name=fn.__qualname__,
                event=event,
                fn=fn,
                is_async=inspect.iscoroutinefunction(fn),
                retry=retry or self.retry,
                batching=batching,
                topic=topic,
                decoder=decoder,
                guards=guards,
            )
            return fn

        return decorate

    def __repr__(self) -> str:
        return f"Service({self.name!r}, handlers={[h.name for h in self.handlers]})"
