"""librdkafka's transactional calls: made again while retriable, given up once hung.

A transactional call that reaches its timeout returns a retriable error and is made again
(``resumed``): a slow coordinator is waited for. But librdkafka's
``send_offsets_to_transaction`` can block past its own timeout, for good, when the group
coordinator left the cluster (librdkafka #5456, #5511): seen as a saga tracker silent after
a broker kill, and an exactly-once relay silent after a rolling restart.

librdkafka checks that call's timeout only between its requests, so a healthy call may
return up to one request timeout (``request_timeout_s``) after it. One that outlives its
timeout by more than that and ``HUNG_MARGIN_S`` will not return: the thread waiting on it
gives the transaction up then (``settle``) and its producer is replaced, instead of waiting
out ``STUCK_S``. Only that call is judged so (``may_hang``): its transaction cannot have
committed yet (the new producer's ``init_transactions`` aborts it, and a transaction given up
makes no further call, ``CallWatch.calling``), whereas the broker may have taken a commit. One
given up after ``STUCK_S`` is looked up once the new producer's ``init_transactions`` returned
(the coordinator has ended the transaction then, either way): if its input offsets are the
group's committed ones it committed, and its batch is kept rather than handled twice (the saga
tracker's ``_took``, a service's transactional producer's ``_took``).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, TypeVar

import confluent_kafka as ck

_log = logging.getLogger("choreo.transport")

TRANSACTION_CALL_S = 10.0
"""Longest one transactional call blocks a thread. A commit or offsets call that times out
goes on inside librdkafka and is made again (``resumed``)."""
STUCK_S = 60.0
"""A saga tracker's transaction, or each transactional call of a service's commit, still
unfinished after this long is given up and its producer replaced, whatever its calls say:
well past the transaction timeout, by when the broker has aborted it anyway."""
HUNG_MARGIN_S = 5.0
"""Slack past a call's timeout and one request timeout before the call counts as hung: a
returning call was seen 1.8 s past its timeout alone (a 3-broker cluster on 2 busy cores)."""
_LOOK_S = 0.5
"""How often the waiting thread looks at the call in progress."""

T = TypeVar("T")


class Hung(Exception):
    """A transaction given up: the reason is the message."""


def request_timeout_s(settings: Mapping[str, Any]) -> float:
    """How long one request of a transactional producer with these settings may take:
    librdkafka's ``socket.timeout.ms``, which it sets to the transaction timeout less 100 ms
    (at least 900 ms) unless given."""
    if "socket.timeout.ms" in settings:
        return int(settings["socket.timeout.ms"]) / 1e3
    return max(int(settings.get("transaction.timeout.ms", 60_000)) - 100, 900) / 1e3


class CallWatch:
    """The call in progress on a transaction's thread, as the thread waiting on it sees it."""

    def __init__(self, request_timeout_s: float, stuck_s: float | None = None) -> None:
        self._request_s = request_timeout_s
        self._stuck_s = STUCK_S if stuck_s is None else stuck_s
        self._given_up_at = time.monotonic() + self._stuck_s
        self._what = ""
        self._overdue_at: float | None = None
        self._given_up = False
        self._lock = threading.Lock()
        """Between a call's end and a verdict: a transaction given up makes no further call
        (a hung offsets call that returns late must not go on to commit what was given up)."""

    @contextmanager
    def calling(self, what: str, timeout_s: float, may_hang: bool) -> Iterator[None]:
        """``what`` is in progress; if it ``may_hang``, it is hung once past its deadline.
        Raises ``Hung`` instead once the transaction was given up."""
        with self._lock:
            if self._given_up:
                raise Hung(f"{what} not made: the transaction was given up")
            self._what = what
            if may_hang:
                self._overdue_at = time.monotonic() + timeout_s + self._request_s + HUNG_MARGIN_S
        try:
            yield
        finally:
            with self._lock:
                self._what, self._overdue_at = "", None

    def verdict(self) -> str | None:
        """Why to give the transaction up now (naming the call in progress), or None. Once
        it says why, no further call of the transaction is made (``calling``)."""
        now = time.monotonic()
        with self._lock:
            what, overdue_at = self._what, self._overdue_at
            if overdue_at is not None and now > overdue_at:
                reason = f"{what} outlived its own timeout and a request's (librdkafka #5456)"
            elif now > self._given_up_at:
                reason = f"{what or 'a transaction'} unfinished after {self._stuck_s:g}s"
            else:
                return None
            self._given_up = True
            return reason


def resumed(
    what: str,
    call: Callable[..., T],
    *args: Any,
    timeout_s: float | None = None,
    until: float | None = None,
    watch: CallWatch | None = None,
    may_hang: bool = False,
) -> T:
    """``call(*args, timeout_s)`` (``TRANSACTION_CALL_S`` by default), made again while
    librdkafka says it may be (retriable, no abort required) and ``until`` (a
    ``time.monotonic()``) has not passed: a call that timed out goes on inside librdkafka,
    and another transactional call meanwhile would only conflict. Each call is shown to
    ``watch``, if given (``may_hang``: see the module's doc)."""
    timeout = TRANSACTION_CALL_S if timeout_s is None else timeout_s
    watch = watch if watch is not None else CallWatch(0.0)
    while True:
        try:
            with watch.calling(what, timeout, may_hang):
                return call(*args, timeout)
        except ck.KafkaException as exc:
            error = kafka_error(exc)
            if error is None or not error.retriable() or error.txn_requires_abort():
                raise
            if until is not None and time.monotonic() > until:
                raise
            _log.warning("%s: not done yet, trying again: %s", what, error.str())


def started(name: str, work: Callable[[], T]) -> concurrent.futures.Future[T]:
    """``work`` in a daemon thread of its own: one stuck in librdkafka is left behind, and
    must hold neither a pool's worker nor the process's exit."""
    done: concurrent.futures.Future[T] = concurrent.futures.Future()

    def run() -> None:
        if not done.set_running_or_notify_cancel():  # so giving up cannot cancel it under us
            return  # cancelled before it started
        try:
            done.set_result(work())
        except BaseException as error:  # the waiting thread raises it
            done.set_exception(error)

    threading.Thread(target=run, name=name, daemon=True).start()
    return done


def settle(done: concurrent.futures.Future[T], watch: CallWatch) -> T:
    """``done``'s result; ``Hung`` once ``watch`` says to give up (and it is still not done)."""
    while True:
        try:
            return done.result(timeout=_LOOK_S)
        except concurrent.futures.TimeoutError:
            reason = watch.verdict()
            if reason is not None and not done.done():
                raise Hung(reason) from None


async def settled(done: concurrent.futures.Future[T], watch: CallWatch) -> T:
    """``settle`` for a coroutine."""
    waited = asyncio.wrap_future(done)
    try:
        while True:
            finished, _ = await asyncio.wait({waited}, timeout=_LOOK_S)
            if finished:
                return waited.result()
            reason = watch.verdict()
            if reason is not None and not done.done():
                raise Hung(reason)
    finally:
        waited.cancel()  # given up, or the waiting task cancelled: the late outcome is nobody's


def kafka_error(error: BaseException) -> ck.KafkaError | None:
    if isinstance(error, ck.KafkaException) and error.args:
        found = error.args[0]
        return found if isinstance(found, ck.KafkaError) else None
    return None
