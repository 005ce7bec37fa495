"""Transactional calls: a slow call is waited for and made again, a hung one is given up."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator

import confluent_kafka as ck
import pytest

from choreo._transport import txn_calls
from choreo._transport.txn_calls import CallWatch, Hung, resumed, settle, settled, started

_RELEASE = threading.Event()


@pytest.fixture(autouse=True)
def _short(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(txn_calls, "TRANSACTION_CALL_S", 0.2)
    monkeypatch.setattr(txn_calls, "HUNG_MARGIN_S", 0.3)
    monkeypatch.setattr(txn_calls, "_LOOK_S", 0.05)
    _RELEASE.clear()
    yield
    _RELEASE.set()  # the hung threads end


def _times_out_then_commits(tries: int) -> tuple[list[float], Callable[[float], str]]:
    """A call that honours its timeout (retriable, as librdkafka's) ``tries`` times, then ends."""
    calls: list[float] = []

    def call(timeout: float) -> str:
        calls.append(timeout)
        if len(calls) <= tries:
            time.sleep(timeout)
            timed_out = ck.KafkaError(ck.KafkaError._TIMED_OUT, "not yet", retriable=True)
            raise ck.KafkaException(timed_out)
        return "committed"

    return calls, call


def _ignores_its_timeout(timeout: float) -> str:
    _RELEASE.wait()
    return "too late"


def test_a_call_that_keeps_timing_out_is_made_again_and_its_result_returned() -> None:
    calls, call = _times_out_then_commits(tries=6)  # 1.2 s in all: far past call + margin
    watch = CallWatch(stuck_s=30)
    done = started("t", lambda: resumed("commit", call, watch=watch))
    assert settle(done, watch) == "committed"
    assert calls == [0.2] * 7


def test_a_call_that_outlives_its_own_timeout_is_given_up_as_hung() -> None:
    watch = CallWatch(stuck_s=30)
    began = time.monotonic()
    done = started("t", lambda: resumed("send offsets", _ignores_its_timeout, watch=watch))
    with pytest.raises(Hung, match=r"send offsets outlived its own timeout by 0.3s \(librdkafka"):
        settle(done, watch)
    assert time.monotonic() - began < 5  # not the 30 s of stuck_s


def test_a_transaction_still_unfinished_after_stuck_s_is_given_up_whatever_its_calls_say() -> None:
    calls, call = _times_out_then_commits(tries=1000)
    watch = CallWatch(stuck_s=1.0)
    done = started("t", lambda: resumed("commit", call, watch=watch))
    with pytest.raises(Hung, match="unfinished after 1s"):
        settle(done, watch)
    assert len(calls) >= 4  # it was made again, not taken for hung


def test_an_error_that_is_not_retriable_comes_out_of_the_wait() -> None:
    fenced = ck.KafkaError(ck.KafkaError._FENCED, "fenced", fatal=True)

    def call(timeout: float) -> None:
        raise ck.KafkaException(fenced)

    watch = CallWatch()
    with pytest.raises(ck.KafkaException) as raised:
        settle(started("t", lambda: resumed("commit", call, watch=watch)), watch)
    assert raised.value.args[0].code() == ck.KafkaError._FENCED


def test_a_coroutine_gives_up_a_hung_call_the_same_way_and_its_late_end_is_nobodys() -> None:
    async def wait() -> str:
        watch = CallWatch(stuck_s=30)
        done = started("t", lambda: resumed("commit", _ignores_its_timeout, watch=watch))
        with pytest.raises(Hung, match="commit outlived its own timeout"):
            await settled(done, watch)
        _RELEASE.set()
        return await asyncio.wrap_future(done)

    assert asyncio.run(wait()) == "too late"
