"""Durable schedules without a broker: cadences, the alarm chain under crashes, TestService."""

from __future__ import annotations

import itertools
import random
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import choreo
from choreo._errors import DecodeError, TopologyError
from choreo._runtime.idempotency import MemoryIdempotency
from choreo._schedule import Schedule, cadence
from choreo._schedule.records import ALARM, Alarm, Tick, decode
from choreo._transport.base import Record
from choreo.testing import TestService

STEP_MS = 60_000


def test_cron_ticks_in_its_zone_through_a_daylight_saving_change() -> None:
    nightly = cadence("0 2 * * *", "Europe/Paris")
    paris = ZoneInfo("Europe/Paris")
    start = int(datetime(2026, 10, 24, 12, tzinfo=paris).timestamp() * 1000)
    first = nightly.after(start)
    second = nightly.after(first)
    assert nightly.local(first) == datetime(2026, 10, 25, 2, tzinfo=paris)
    assert nightly.local(second) == datetime(2026, 10, 26, 2, tzinfo=paris)
    assert second - first == 25 * 3600 * 1000  # the night the clocks go back lasts an hour more
    assert nightly.latest(second + 1) == second
    assert nightly.latest(second) == second
    assert nightly.count(first, second + 5 * 24 * 3600 * 1000) == 6


def test_declaration_errors_name_the_culprit() -> None:
    svc = choreo.Service("declared")
    with pytest.raises(TopologyError, match="not a cron line"):
        svc.every("every night")
    with pytest.raises(TopologyError, match="unknown time zone"):
        svc.every("0 2 * * *", tz="Mars/Olympus")
    with pytest.raises(TopologyError, match="cron lines only"):
        svc.every(timedelta(minutes=5), tz="Europe/Paris")
    with pytest.raises(TopologyError, match="at least one second"):
        svc.every(timedelta(milliseconds=10))

    def job(tick: choreo.Tick, ctx: choreo.Context) -> None: ...

    svc.every(timedelta(minutes=5))(job)
    with pytest.raises(TopologyError, match="two schedules named 'job'"):
        svc.every(timedelta(minutes=1))(job)


def test_a_late_alarm_runs_the_latest_missed_tick_once_and_counts_the_others() -> None:
    schedule = Schedule("svc", "job", cadence(timedelta(minutes=1), None))
    due = 100 * STEP_MS
    tick, alarm = schedule.ring(Alarm(due), (due + 10 * STEP_MS + 5_000) / 1000)
    ran = decode(_record(tick), schedule.cadence.local)
    assert isinstance(ran, Tick)
    assert (ran.at, ran.skipped) == (datetime.fromtimestamp((due + 10 * STEP_MS) / 1000, UTC), 10)
    assert decode(_record(alarm), schedule.cadence.local) == Alarm(due + 11 * STEP_MS)
    assert schedule.ring(Alarm(due), due / 1000) == []  # the same alarm again: a copy


@settings(max_examples=100, deadline=None)
@given(seed=st.integers(0, 2**32 - 1))
def test_chain_survives_crashes_and_seeds_without_losing_or_multiplying(seed: int) -> None:
    """A partition log replayed by owners that crash before committing, with instances
    proposing alarms at random times: no tick time is lost (run, or counted as skipped by
    the tick that followed), a tick runs twice only across a crash, and once the owner
    runs undisturbed the chain is one alarm again."""
    rng = random.Random(seed)
    print(f"seed {seed}")
    plan = cadence(timedelta(minutes=1), None)
    now = rng.randrange(10**12)
    log = [_record(Schedule("svc", "job", plan).seed(now / 1000))]
    first_due = plan.after(now)
    committed, crashes = 0, 0
    ran: list[Tick] = []
    owner = Schedule("svc", "job", plan)
    for round_left in reversed(range(rng.randrange(0, 40) + 10)):
        calm = round_left < 10  # the last rounds: no crash, no new instance, time moves on
        now += rng.randrange(STEP_MS, 2 * STEP_MS) if calm else rng.randrange(3 * STEP_MS)
        if not calm and rng.random() < 0.2:  # an instance starts: it proposes the next tick
            log.append(_record(Schedule("svc", "job", plan).seed(now / 1000)))
            if rng.random() < 0.5:  # and takes the partition over
                owner = Schedule("svc", "job", plan)
        crash = not calm and rng.random() < 0.3
        crashes += crash
        position = committed
        while position < len(log):
            item = decode(log[position], plan.local)
            if isinstance(item, Alarm):
                if item.at_ms > now:
                    break  # held until due
                log += [_record(out) for out in owner.ring(item, now / 1000)]
            else:
                ran.append(item)
            position += 1
            if not crash:
                committed = position
        if crash:  # killed before committing: another instance reads from the commit on
            owner = Schedule("svc", "job", plan)
    runs = [tick.at for tick in ran]
    if not crashes:
        assert len(runs) == len(set(runs)), "a tick ran twice without a crash"
    covered = {
        at - timedelta(minutes=k)
        for tick in ran
        for at in [tick.at]
        for k in range(1 + tick.skipped)
    }
    if runs:
        last = max(runs)
        expected = {
            datetime.fromtimestamp(ms / 1000, UTC)
            for ms in range(first_due, int(last.timestamp() * 1000) + 1, STEP_MS)
        }
        assert expected <= covered, f"lost ticks: {sorted(expected - covered)[:3]}"
    pending = {
        item.at_ms
        for record in log[committed:]
        if isinstance(item := decode(record, plan.local), Alarm)
    }
    assert len(pending) == 1, f"the chain did not collapse: {sorted(pending)}"
    assert pending.pop() > now


@settings(max_examples=150, deadline=None)
@given(
    value=st.one_of(st.none(), st.binary(max_size=80)),
    kind=st.one_of(st.none(), st.binary(max_size=30), st.sampled_from([ALARM, b"x"])),
)
def test_any_bytes_on_a_schedule_topic_decode_or_are_parked_by_name(
    value: bytes | None, kind: bytes | None
) -> None:
    headers = [] if kind is None else [("ce_type", kind)]
    record = Record("choreo.schedule.svc.job", 0, 7, None, value, headers, 0)
    try:
        decode(record, cadence(timedelta(minutes=1), None).local)
    except DecodeError as error:
        assert "choreo.schedule.svc.job[0]@7" in str(error)


def test_a_service_runs_its_schedules_on_the_test_clock() -> None:
    svc = choreo.Service("clocked")
    seen: list[tuple[str, choreo.Tick, str | None]] = []

    @svc.every(timedelta(minutes=5))
    def beat(tick: choreo.Tick, ctx: choreo.Context) -> None:
        seen.append(("beat", tick, ctx.event_id))

    @svc.every("0 2 * * *", tz="Europe/Paris", name="nightly")
    async def report(tick: choreo.Tick, ctx: choreo.Context) -> None:
        seen.append(("nightly", tick, ctx.event_id))

    with TestService(svc) as t:
        t.advance(timedelta(minutes=4, seconds=59))
        assert len([s for s in seen if s[0] == "beat"]) <= 1
        t.advance(timedelta(days=2))
    beats = [tick.at for name, tick, _ in seen if name == "beat"]
    assert beats == sorted(set(beats))
    assert all(b - a == timedelta(minutes=5) for a, b in itertools.pairwise(beats))
    nights = [tick.at for name, tick, _ in seen if name == "nightly"]
    assert len(nights) == 2
    assert {(at.hour, at.minute, str(at.tzinfo)) for at in nights} == {(2, 0, "Europe/Paris")}
    assert all(tick.skipped == 0 for _, tick, _ in seen)
    assert all(event_id and event_id.startswith(f"clocked.{name}@") for name, _, event_id in seen)


def test_a_tick_that_fails_for_good_is_parked_and_the_schedule_goes_on() -> None:
    svc = choreo.Service(
        "flaky", retry=choreo.RetryPolicy(max_attempts=2, initial_interval_s=0.001)
    )
    ran: list[datetime] = []

    @svc.every(timedelta(minutes=1))
    def job(tick: choreo.Tick, ctx: choreo.Context) -> None:
        ran.append(tick.at)
        if len(ran) <= 2:
            raise RuntimeError(f"tick {tick.at} failed")

    with TestService(svc, raise_errors=False) as t:
        t.advance(timedelta(minutes=3))
        [parked] = t.dead_letters("choreo.schedule.flaky.job")
    assert parked.header("choreo_dlq_reason") == b"handler-error"
    assert len(set(ran)) == 3  # the first tick's two tries, then two more ticks


def test_a_tick_written_twice_runs_once_with_an_idempotency_store() -> None:
    svc = choreo.Service("stored", idempotency=MemoryIdempotency())
    ran: list[datetime] = []

    @svc.every(timedelta(minutes=1))
    def job(tick: choreo.Tick, ctx: choreo.Context) -> None:
        ran.append(tick.at)

    with TestService(svc, idempotency=svc.idempotency) as t:
        t.advance(timedelta(minutes=1))
        [tick] = [
            r for r in t.records("choreo.schedule.stored.job") if r.header("ce_type") != ALARM
        ]
        t.send_raw(tick.topic, tick.value, key=tick.key, headers=tick.headers)
    assert len(ran) == 1


def _record(out: tuple[str, bytes, bytes, list[tuple[str, bytes]]]) -> Record:
    topic, key, value, headers = out
    return Record(topic, 0, 0, key, value, headers, 0)
