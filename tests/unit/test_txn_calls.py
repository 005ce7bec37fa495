"""Transactional calls: a slow call is waited for and made again, a hung one is given up."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from functools import partial

import confluent_kafka as ck
import pytest

from choreo._transport import txn_calls
from choreo._transport.txn_calls import (
    CallWatch,
    Hung,
    request_timeout_s,
    resumed,
    settle,
    settled,
    started,
)

REQUEST_S = 0.2
_release = threading.Event()
"""Ends the calls of the test running: those left behind when their transaction was given up
(each test has its own, so a late thread cannot miss its end)."""


@pytest.fixture(autouse=True)
def _short(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    global _release
    monkeypatch.setattr(txn_calls, "TRANSACTION_CALL_S", 0.2)
    monkeypatch.setattr(txn_calls, "HUNG_MARGIN_S", 0.3)
    monkeypatch.setattr(txn_calls, "_LOOK_S", 0.05)
    release = _release = threading.Event()
    yield
    release.set()


def _times_out_then_commits(tries: int) -> tuple[list[float], Callable[[float], str]]:
    """A call that honours its timeout (retriable, as librdkafka's) ``tries`` times, then ends."""
    calls: list[float] = []
    release = _release

    def call(timeout: float) -> str:
        calls.append(timeout)
        if len(calls) <= tries and not release.is_set():
            time.sleep(timeout)
            timed_out = ck.KafkaError(ck.KafkaError._TIMED_OUT, "not yet", retriable=True)
            raise ck.KafkaException(timed_out)
        return "committed"

    return calls, call


def _ignores_its_timeout(timeout: float) -> str:
    _release.wait()
    return "too late"


def _late_by(late_s: float) -> Callable[[float], str]:
    """A call that returns ``late_s`` past its timeout: a request sent just before it."""

    def call(timeout: float) -> str:
        time.sleep(timeout + late_s)
        return "committed"

    return call


def test_a_call_that_keeps_timing_out_is_made_again_and_its_result_returned() -> None:
    calls, call = _times_out_then_commits(tries=6)  # 1.2 s in all: far past call + margin
    watch = CallWatch(REQUEST_S, stuck_s=30)
    done = started("t", partial(resumed, "send offsets", call, watch=watch, may_hang=True))
    assert settle(done, watch) == "committed"
    assert calls == [0.2] * 7


def test_an_offsets_call_that_outlives_its_timeout_and_a_request_is_given_up_as_hung() -> None:
    watch = CallWatch(REQUEST_S, stuck_s=30)
    began = time.monotonic()
    work = partial(resumed, "send offsets", _ignores_its_timeout, watch=watch, may_hang=True)
    with pytest.raises(Hung, match=r"send offsets outlived its own timeout and a request's"):
        settle(started("t", work), watch)
    assert time.monotonic() - began < 5  # not the 30 s of stuck_s


def test_a_call_late_by_less_than_one_request_is_waited_for() -> None:
    """librdkafka checks the offsets call's timeout between requests only."""
    watch = CallWatch(request_timeout_s=2.0, stuck_s=30)
    work = partial(resumed, "send offsets", _late_by(1.0), watch=watch, may_hang=True)
    assert settle(started("t", work), watch) == "committed"


def test_a_commit_is_never_judged_hung_only_given_up_after_stuck_s() -> None:
    """A commit given up after the broker took it would have its batch handled again."""
    watch = CallWatch(REQUEST_S, stuck_s=1.5)
    began = time.monotonic()
    with pytest.raises(Hung, match=r"^commit unfinished after 1\.5s$"):
        settle(started("t", partial(resumed, "commit", _ignores_its_timeout, watch=watch)), watch)
    assert time.monotonic() - began >= 1.5


def test_a_transaction_still_unfinished_after_stuck_s_is_given_up_whatever_its_calls_say() -> None:
    calls, call = _times_out_then_commits(tries=1000)
    watch = CallWatch(REQUEST_S, stuck_s=1.0)
    done = started("t", partial(resumed, "send offsets", call, watch=watch, may_hang=True))
    with pytest.raises(Hung, match="send offsets unfinished after 1s"):
        settle(done, watch)
    assert len(calls) >= 2  # it was made again, not taken for hung


def test_an_error_that_is_not_retriable_comes_out_of_the_wait() -> None:
    fenced = ck.KafkaError(ck.KafkaError._FENCED, "fenced", fatal=True)

    def call(timeout: float) -> None:
        raise ck.KafkaException(fenced)

    watch = CallWatch(REQUEST_S)
    with pytest.raises(ck.KafkaException) as raised:
        settle(started("t", partial(resumed, "commit", call, watch=watch)), watch)
    assert raised.value.args[0].code() == ck.KafkaError._FENCED


def test_a_coroutine_gives_up_a_hung_call_the_same_way_and_its_late_end_is_nobodys() -> None:
    async def wait() -> str:
        watch = CallWatch(REQUEST_S, stuck_s=30)
        work = partial(resumed, "send offsets", _ignores_its_timeout, watch=watch, may_hang=True)
        done = started("t", work)
        with pytest.raises(Hung, match="send offsets outlived its own timeout"):
            await settled(done, watch)
        _release.set()
        return await asyncio.wrap_future(done)

    assert asyncio.run(wait()) == "too late"


def test_a_request_lasts_what_librdkafka_makes_of_the_settings() -> None:
    assert request_timeout_s({}) == 59.9
    assert request_timeout_s({"transaction.timeout.ms": 10_000}) == 9.9
    assert request_timeout_s({"transaction.timeout.ms": 500}) == 0.9
    assert request_timeout_s({"transaction.timeout.ms": 10_000, "socket.timeout.ms": "3000"}) == 3


def test_a_transaction_given_up_makes_no_further_call_even_if_the_hung_one_returns() -> None:
    """A late offsets call must not go on to commit the transaction a new producer took over."""
    commits: list[float] = []
    watch = CallWatch(REQUEST_S, stuck_s=30)

    def transaction() -> None:
        resumed("send offsets", _late_by(1.5), watch=watch, may_hang=True)  # overdue at 0.7 s
        resumed("commit", commits.append, watch=watch)

    done = started("t", transaction)
    with pytest.raises(Hung, match="send offsets outlived"):
        settle(done, watch)
    with pytest.raises(Hung, match="commit not made: the transaction was given up"):
        done.result(timeout=10)
    assert commits == []
