"""States as the tracker's memory holds them: packed with a preset dictionary (the first state
packed), unpacked to the same bytes; the store hands out parsed states and lists JSON.

The round trip is checked on any bytes after any first state, the size on the order saga's
open state with its own random ids and times (what the memory figure in bench/README.md
rests on)."""

from __future__ import annotations

import random
import uuid

import pytest
import saga_defs as d
from hypothesis import given, settings
from hypothesis import strategies as st

from choreo._saga.packing import ZDICT_MAX, Packer
from choreo._saga.store import StateStore
from choreo.saga import Engine, Incoming, SagaState, SagaStatus

ENGINE = Engine([d.order_saga])


def open_state(saga_id: str, now: float) -> SagaState:
    """Started (with trace context) and stock reserved: waiting for the payment."""
    trace = {"traceparent": f"00-{uuid.uuid4().hex}-{uuid.uuid4().hex[:16]}-01"}
    start = Incoming(saga_id, d.placed(saga_id), str(uuid.uuid4()), trace)
    state = ENGINE.handle(None, start, now).state
    reserved = Incoming(saga_id, d.reserved(saga_id), str(uuid.uuid4()))
    state = ENGINE.handle(state, reserved, now + 0.5).state
    assert state is not None
    return state


@settings(max_examples=300, derandomize=True)
@given(st.binary(max_size=5000), st.lists(st.binary(max_size=5000), max_size=5))
def test_any_bytes_come_back_as_they_went_in(first: bytes, others: list[bytes]) -> None:
    packer = Packer()
    packed = [packer.pack(data, b"wake-at!") for data in (first, *others)]
    unpacked = [first, *others]
    assert [packer.unpack(memoryview(data)[8:]) for data in packed] == unpacked
    assert packer.unpack_many([memoryview(data)[8:] for data in packed]) == unpacked


@pytest.mark.parametrize("first", [b"", b'{"saga_id": "s-1"}'])
def test_a_batch_of_empty_records_unpacks(first: bytes) -> None:
    """A changelog record with an empty value is held as it is; python-zstandard's batch call
    corrupted the heap (the process aborted) on a batch of only such frames."""
    packer = Packer()
    packer.pack(first)
    assert packer.unpack_many([packer.pack(b""), packer.pack(b"")]) == [b"", b""]
    assert packer.unpack_many([packer.pack(b""), packer.pack(b"{}")]) == [b"", b"{}"]


@given(
    st.lists(st.binary(max_size=5000), min_size=1, max_size=6),
    st.lists(st.binary(max_size=5000), max_size=6),
    st.booleans(),
)
def test_a_batch_packed_in_one_call_comes_back_whichever_way_primed_first(
    batch: list[bytes], singles: list[bytes], batch_first: bool
) -> None:
    """The commit thread packs a batch at once, the loop thread a restore's states one by
    one: both with the one dictionary, whichever of the two packed first."""
    packer = Packer()
    if batch_first:
        packed = packer.pack_many(batch) + [packer.pack(data) for data in singles]
    else:
        packed = [packer.pack(data) for data in singles] + packer.pack_many(batch)
    expected = batch + singles if batch_first else singles + batch
    assert [packer.unpack(data) for data in packed] == expected
    assert packer.unpack_many(packed) == expected  # a batch's states, read in one call
    assert packer.pack_many([]) == []


@pytest.mark.parametrize("seed", range(8))
def test_a_first_state_longer_than_the_dictionary_takes_still_comes_back(seed: int) -> None:
    rng = random.Random(seed)
    size = rng.randrange(ZDICT_MAX + 1, 3 * ZDICT_MAX)
    first = rng.randbytes(size) if seed % 2 else b'{"k":%d}' % rng.getrandbits(64) * (size // 20)
    others = [rng.randbytes(rng.randrange(40_000)), first[-5000:] + first[:5000], first]
    packer = Packer()
    packed = [packer.pack(data) for data in (first, *others)]
    assert [packer.unpack(data) for data in packed] == [first, *others]


def test_an_open_order_saga_is_held_in_a_sixth_of_its_json() -> None:
    packer = Packer()
    packer.pack(open_state("order-template", 1.8e9).to_bytes())
    for i in range(20):
        data = open_state(f"order-{uuid.uuid4()}", 1.8e9 + i * 7.3).to_bytes()
        packed = packer.pack(data)
        assert len(packed) * 6 < len(data), (len(packed), len(data))
        assert packer.unpack(packed) == data


def test_the_store_parses_what_was_committed_and_lists_it_as_json() -> None:
    store = StateStore()
    first, second = open_state("a", 1.8e9), open_state("b", 1.8e9 + 1)
    store.load(0, {"a": store.pack(first.to_bytes())})
    store.apply({(0, "b"): second.to_bytes(), (1, "c"): b"{}"})  # partition 1 is not owned
    taken = store.get(0, "a")
    assert taken == first
    assert taken is not None
    taken.status = SagaStatus.FAILED
    assert store.get(0, "a") == first  # a fresh parse each time: changing one changes nothing
    assert dict(store.items()) == {(0, "a"): first.to_bytes(), (0, "b"): second.to_bytes()}
    store.apply({(0, "a"): None})
    assert store.get(0, "a") is None
    assert dict(store.items()) == {(0, "b"): second.to_bytes()}
