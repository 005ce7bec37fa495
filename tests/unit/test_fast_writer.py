"""The generated fast writers against the dumping path (``model_dump`` + fastavro's writer).

For the repo's schemas and for generated schemas of every supported type, events decoded from
random valid records must be written to the same bytes by ``Codec`` as by
``Codec(fast=False)``, and the generated writer itself must write them (not hand them on).
Events whose attributes were swapped for odd values (wrong types, ints past 32 or 64 bits,
bools, naive datetimes, decimals of another scale, plain dicts for nested models) must get
the same bytes or the same error, type and message, as before.
"""

from __future__ import annotations

import datetime
import decimal
import os
import uuid
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from unittest.mock import patch

import pytest
from hypothesis import given
from hypothesis import strategies as st
from test_fast_reader import (
    REPO,
    SETTINGS,
    avro_values,
    encode,
    event_schemas,
    generated_event,
    repo_models,
)

from choreo import _headers
from choreo._errors import DecodeError
from choreo._schemas import Catalog, Codec, Event
from choreo._schemas.codec import MAGIC
from choreo._schemas.fastwrite import fast_writer
from choreo._schemas.layout import SchemaVersion

__all__ = ["repo_models"]  # the fixture, shared with the reader's test

Outcome = tuple[str, ...]

ODD = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.sampled_from([2**31, -(2**31) - 1, 2**63, -(2**63) - 1, 63, 64, -64, -65]),
    st.floats(),
    st.text(max_size=4),
    st.binary(max_size=4),
    st.decimals(allow_nan=False, allow_infinity=False, places=3),
    st.datetimes(),
    st.datetimes(timezones=st.just(datetime.UTC)),
    st.dates(),
    st.uuids(),
    st.lists(st.integers(-100, 100), max_size=2),
    st.dictionaries(st.text(max_size=2), st.integers(-100, 100), max_size=2),
)
"""Values a handler may leave in a model's attributes (by assignment or ``model_construct``)."""


def outcome(codec: Codec, event: Event) -> Outcome:
    """The bytes written, or the error raised, type and message."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydantic's serializer warnings, the same both ways
        try:
            return ("bytes", codec.encode(event).hex())
        except Exception as error:
            return ("refused", type(error).__name__, str(error))


def decoded(
    catalog: Catalog, version: SchemaVersion, model: type[Event], value: dict[str, Any]
) -> Event | None:
    """A valid event as a consumer builds it from ``value``; None if validation refuses it."""
    data = encode(version, value)
    if data is None:
        return None
    try:
        return Codec(catalog, fast=False).decode(data, model)
    except DecodeError:
        return None


def check_valid(catalog: Catalog, version: SchemaVersion, event: Event) -> None:
    """Equal bytes, and written by the generated writer itself."""
    expected = outcome(Codec(catalog, fast=False), event)
    assert expected[0] == "bytes", expected
    assert outcome(Codec(catalog), event) == expected
    fast = fast_writer(version.record, type(event), MAGIC + version.fingerprint)
    assert fast is not None
    assert fast(event).hex() == expected[1]


def check_odd(catalog: Catalog, event: Event, attr: str, odd: Any) -> None:
    """The same bytes or the same error as the dumping writer."""
    changed = event.model_copy()
    changed.__dict__[attr] = odd
    assert outcome(Codec(catalog), changed) == outcome(Codec(catalog, fast=False), changed)


@SETTINGS
@given(data=st.data())
def test_repo_schemas(repo_models: dict[SchemaVersion, type[Event]], data: st.DataObject) -> None:
    event_type = data.draw(st.sampled_from(sorted(REPO.event_types)), label="event type")
    version = REPO.latest(event_type)
    value = data.draw(avro_values(version.record), label="value")
    event = decoded(REPO, version, repo_models[version], value)
    if event is None:
        return
    check_valid(REPO, version, event)
    attr = data.draw(st.sampled_from(sorted(type(event).model_fields)), label="field")
    check_odd(REPO, event, attr, data.draw(ODD, label="odd value"))


@SETTINGS
@given(schema=event_schemas(), data=st.data())
def test_generated_schemas(schema: dict[str, Any], data: st.DataObject, tmp_path: Path) -> None:
    catalog, version, model = generated_event(schema, tmp_path)
    for value in data.draw(st.lists(avro_values(version.record), min_size=1, max_size=4)):
        event = decoded(catalog, version, model, value)
        if event is None:
            continue
        check_valid(catalog, version, event)
        attr = data.draw(st.sampled_from(sorted(type(event).model_fields)), label="field")
        check_odd(catalog, event, attr, data.draw(ODD, label="odd value"))


_PLACES = ("1.5", "12.34", "1.005", "99.999", "-0.01", "123.4")
_INTS = (2**31 - 1, 2**31, -(2**31), -(2**31) - 1, -64, 64)
EDGES: list[tuple[str, Any]] = [
    *[("d", decimal.Decimal(text)) for text in _PLACES],
    *[(field, n) for field in ("n", "i") for n in _INTS],
    *[("l", n) for n in (2**63 - 1, 2**63, -(2**63), -(2**63) - 1)],
    ("i", True),
    ("i", None),
    ("f", 1),
    ("f", 3.4e38),
    ("f", 3.5e38),
    ("f", float("nan")),
]  # fmt: skip
"""Where the writers' behaviour changes: a decimal's places and digits, an int past 32 bits
(written as is by fastavro in a plain field, refused in a union), a long past 64, a float past
a 32-bit float's range."""


@pytest.mark.parametrize(("field", "odd"), EDGES, ids=repr)
def test_edges(field: str, odd: Any, tmp_path: Path) -> None:
    """Values at the edges of what the generated writer writes itself: the same bytes or error."""
    decimal_type = {"type": "bytes", "logicalType": "decimal", "precision": 4, "scale": 2}
    fields = [("k", "string"), ("d", decimal_type), ("n", "int"), ("i", ["null", "int"])]
    fields += [("l", ["long", "null"]), ("f", "float")]
    schema = {
        "type": "record",
        "name": "Gen",
        "namespace": "g.x",
        "fields": [{"name": name, "type": avro} for name, avro in fields],
    }
    catalog, version, model = generated_event(schema, tmp_path)
    event = model(k="a", d=decimal.Decimal("1.5"), n=1, i=2, l=3, f=0.5)
    check_valid(catalog, version, event)
    check_odd(catalog, event, field, odd)


@pytest.mark.parametrize("event_type", sorted(REPO.event_types))
def test_every_repo_model_writes_fast(event_type: str) -> None:
    """The repo's generated models all get a generated writer (none is silently ineligible)."""
    import services.events as generated

    version = REPO.latest(event_type)
    model = next(
        m
        for m in vars(generated).values()
        if isinstance(m, type) and getattr(m, "event_type", None) == event_type
    )
    assert fast_writer(version.record, model, MAGIC + version.fingerprint) is not None


# --- the rest of an output's own cost: its event id ----------------------------------------------


def test_event_ids_are_version_4_uuids_as_uuid4_writes_them() -> None:
    """``new_event_id`` skips the ``UUID`` object; its text must be what ``str(uuid4())`` gives:
    version 4, the RFC 4122 variant, lower-case hex in 8-4-4-4-12 groups, and never repeated."""
    ids = [_headers.new_event_id() for _ in range(20_000)]
    assert len(set(ids)) == len(ids)
    for text in ids:
        parsed = uuid.UUID(text)
        assert (parsed.version, parsed.variant, str(parsed)) == (4, uuid.RFC_4122, text)
    # the 122 random bits vary: every hex digit but the version and variant ones takes all 16
    digits = [{text.replace("-", "")[i] for text in ids} for i in range(32)]
    assert [i for i, seen in enumerate(digits) if len(seen) < 16] == [12, 16]


def test_event_ids_drawn_ahead_are_not_repeated_across_fork_or_threads() -> None:
    """Ids are drawn ahead in bulk: a forked child (a pre-fork server, multiprocessing) must
    not hand out the ids its parent holds, nor two threads the same one."""
    _headers.new_event_id()  # the parent now holds ids drawn ahead
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover (the child)
        os.write(write, " ".join(_headers.new_event_id() for _ in range(300)).encode())
        os._exit(0)
    os.close(write)
    os.waitpid(child, 0)
    with os.fdopen(read) as pipe:
        theirs = set(pipe.read().split())
    ours = {_headers.new_event_id() for _ in range(300)}
    assert len(theirs) == 300 and not ours & theirs

    with ThreadPoolExecutor(4) as pool:
        batches = list(pool.map(lambda _: [_headers.new_event_id() for _ in range(5000)], range(8)))
    drawn = [event_id for batch in batches for event_id in batch]
    assert len(set(drawn)) == len(drawn)


@SETTINGS
@given(moments=st.lists(st.integers(0, 2**62), min_size=1, max_size=5))
def test_ce_time_is_now_to_the_millisecond(moments: list[int]) -> None:
    """``ce_time`` is formatted once per millisecond and reused: each value must still be the
    clock's own millisecond, as ``isoformat(timespec="milliseconds")`` writes it."""
    epoch = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)
    for ns in sorted(moments) + moments:  # the same millisecond again, and going back
        for at in (ns, ns + 1, ns - ns % 1_000_000 + 999_999):
            with patch.object(_headers.time, "time_ns", return_value=at):
                written = _headers.event_headers(b"t", b"s", "i", "c", None)
            expected = epoch + datetime.timedelta(microseconds=at // 1000)
            text = expected.isoformat(timespec="milliseconds")
            assert dict(written)[_headers.TIME] == text.encode()
