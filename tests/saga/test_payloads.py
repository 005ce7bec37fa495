"""Events with binary fields (Avro ``bytes``/``fixed``: digests, signatures, tokens) through the
saga engine and its state.

pydantic's JSON mode raises on bytes that are not UTF-8, and the engine stores payloads in
that mode: the first such event stopped the tracker (and every restart after, on the same
record). Now such payloads are kept losslessly, and the compensations and fallback commands
built from them carry the exact bytes.
"""

from __future__ import annotations

from pathlib import Path

import msgspec
import saga_defs
from hypothesis import given, settings
from hypothesis import strategies as st
from plain_events import Lost, Refunded, Shipped

from choreo import Event
from choreo._saga.engine import Decoded
from choreo._schemas import Catalog, Codec, payloads
from choreo._schemas.event import Record
from choreo.saga import Engine, Fallback, Incoming, Saga, SagaState, SagaStatus, Step


class Part(Record):
    blob: bytes | None
    chunks: list[bytes]
    named: dict[str, bytes]
    label: str


class Signed(Event):
    event_type = "test.payloads.Signed"
    order_id: str
    signature: bytes
    part: Part
    note: str | None = None


class Charged(Event):
    event_type = "test.payloads.Charged"
    order_id: str
    token: bytes


class Refund(Event):
    event_type = "test.payloads.Refund"
    order_id: str
    signature: bytes
    token: bytes
    reason: str


class Refused(Charged):
    """The charge refused, with the token it was tried with."""

    event_type = "test.payloads.Refused"


class Retry(Event):
    event_type = "test.payloads.Retry"
    order_id: str
    token: bytes
    signature: bytes


SAGA = Saga(
    "payloads",
    version=1,
    start=Signed,
    steps=[
        Step("sign", success=[Signed]),
        Step(
            "charge",
            success=[Charged],
            failure=[Refused],
            fallbacks=[Fallback(on=[Refused], command=Retry, success=[Charged])],
            compensate=Refund,
            compensated=[Refunded],
        ),
        Step("ship", success=[Shipped], failure=[Lost]),
    ],
    completed=[Shipped],
)

binary = st.binary(max_size=40)
parts = st.builds(
    Part,
    blob=st.none() | binary,
    chunks=st.lists(binary, max_size=3),
    named=st.dictionaries(st.text(max_size=5), binary, max_size=3),
    label=st.text(max_size=10),
)
signed = st.builds(Signed, order_id=st.just("o-1"), signature=binary, part=parts)


def stored(payload: dict[str, object]) -> dict[str, object]:
    """The payload as a state written to the changelog and read back holds it."""
    result: dict[str, object] = msgspec.json.decode(msgspec.json.encode(payload))
    return result


@given(signed)
@settings(max_examples=300, deadline=None)
def test_any_bytes_survive_the_state(event: Signed) -> None:
    payload = payloads.dump(event)
    assert Signed.model_validate(payloads.values(stored(payload))) == event


@given(signed)
@settings(max_examples=300, deadline=None)
def test_text_bytes_are_written_as_before(event: Signed) -> None:
    """A payload pydantic's JSON mode can write is written as it always was: states in
    changelogs before this change read the same, and so do these."""
    payload = payloads.dump(event)
    try:
        before = event.__pydantic_serializer__.to_python(event, mode="json")
    except UnicodeDecodeError:
        assert payload[payloads.BASE64_BYTES]  # where the base64 values are
        return
    assert payload == before
    assert payloads.values(payload) is payload


def run(events: list[Event]) -> tuple[SagaState, list[Event]]:
    """The events through the engine, the state written and read back between each."""
    engine = Engine([SAGA])
    state = None
    emitted: list[Event] = []
    for number, event in enumerate(events):
        incoming = Incoming(event.order_id, event, f"e-{number}")  # type: ignore[attr-defined]
        outcome = engine.handle(state, incoming, 100.0 + number)
        assert outcome.state is not None
        state = SagaState.from_bytes(outcome.state.to_bytes())
        emitted += [emit.event for emit in outcome.emits]
    assert state is not None
    return state, emitted


@given(signed, binary)
@settings(max_examples=100, deadline=None)
def test_a_compensation_carries_the_exact_bytes(start: Signed, token: bytes) -> None:
    state, emitted = run([start, Charged(order_id="o-1", token=token), Lost(order_id="o-1")])
    assert state.status == SagaStatus.COMPENSATING
    (refund,) = emitted
    assert isinstance(refund, Refund)
    assert (refund.signature, refund.token) == (start.signature, token)


@given(signed, binary)
@settings(max_examples=100, deadline=None)
def test_a_fallback_command_carries_the_exact_bytes(start: Signed, token: bytes) -> None:
    _, emitted = run([start, Refused(order_id="o-1", token=token)])
    (retry,) = emitted
    assert isinstance(retry, Retry)
    assert (retry.token, retry.signature) == (token, start.signature)


def test_a_payload_edited_by_hand_is_refused_by_validation_not_decoded_wrong() -> None:
    """A listed value that is not base64, or a path that leads nowhere, is handed over as it
    is: validation, not this module, says what is wrong (the engine parks the saga with that
    message)."""
    payload = {
        "order_id": "o-1",
        "token": "not base64!",
        payloads.BASE64_BYTES: [["token"], ["x", 3], 7],
    }
    assert payloads.values(payload) == {"order_id": "o-1", "token": "not base64!"}


class Memo(Event):
    event_type = "test.payloads.Memo"
    memo: bytes
    token: bytes


def test_a_field_that_became_bytes_since_reads_what_was_stored() -> None:
    """Which values are base64 is stored with them, not taken from the model: ``memo`` was a
    string when this state was written (a legal Avro promotion since), and stays that text."""
    stored = {"memo": "Test", "token": "_w==", payloads.BASE64_BYTES: [["token"]]}
    assert Memo.model_validate(payloads.values(stored)) == Memo(memo=b"Test", token=b"\xff")


def test_an_event_read_as_its_payload_decides_as_its_model() -> None:
    """The tracker hands the engine events read straight into payloads (``Decoded``): the same
    state results, and a step condition (``when=``, the approval over 1,000) still sees the
    model, read from the bytes only then."""
    codec = Codec(Catalog.load(Path(__file__).resolve().parents[2] / "schemas"))
    engine = Engine([saga_defs.order_saga])
    skipped = []
    for total in ("19.98", "5000.00"):
        placed = saga_defs.placed("o-1", total=total)
        data = codec.encode(placed)
        model = type(placed)
        decoded = Decoded(
            placed.event_type, codec.payload_decoder(model)(data), data, codec.decoder(model)
        )
        by_model = engine.handle(None, Incoming("o-1", placed, "e-1"), 1.0)
        by_payload = engine.handle(None, Incoming("o-1", decoded, "e-1"), 1.0)
        assert by_model.state is not None and by_payload.state is not None
        assert by_payload.state.to_bytes() == by_model.state.to_bytes()
        skipped.append(by_payload.state.steps["approval"].status == "skipped")
    assert skipped == [True, False]
