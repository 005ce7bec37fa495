"""A compensation without ``build=`` is filled from the stored payloads of the step's result and
the saga's start, without validating both into models first; these are the cases where the
payloads are not enough and the models decide, as they always did."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

import msgspec
from plain_events import Lost, Refunded, Shipped
from pydantic import ConfigDict, field_validator

from choreo import Event
from choreo._saga.state import payload_json
from choreo.saga import Engine, Incoming, Outcome, Saga, SagaState, SagaStatus, Step


class Ordered(Event):
    event_type = "test.fill.Ordered"
    order_id: str
    amount: Decimal
    region: str = "eu"
    currency: str = "USD"


class Charged(Event):
    event_type = "test.fill.Charged"
    order_id: str
    amount: Decimal
    currency: str = "EUR"
    """Added in a later version of the event, with a default: older states lack it."""


class Refund(Event):
    event_type = "test.fill.Refund"
    order_id: str
    amount: Decimal
    currency: str
    region: str
    reason: str
    requested_at: datetime


class StrictRefund(Refund):
    event_type = "test.fill.StrictRefund"
    model_config = ConfigDict(strict=True)


def saga(refund: type[Event]) -> Saga:
    return Saga(
        "fill",
        version=1,
        start=Ordered,
        steps=[
            Step("charge", success=[Charged], compensate=refund, compensated=[Refunded]),
            Step("ship", success=[Shipped], failure=[Lost]),
        ],
        completed=[Shipped],
    )


def compensate(
    refund: type[Event], drop_from_result: str | None = None, stored: bytes | None = None
) -> Event:
    """The saga charged, its state written, ``drop_from_result`` taken out of the stored result
    (a state an older event version wrote), then the shipping failed."""
    outcome = fail_shipping(refund, drop_from_result, stored)
    (emit,) = outcome.emits
    return emit.event


def fail_shipping(
    refund: type[Event], drop_from_result: str | None = None, stored: bytes | None = None
) -> Outcome:
    """``compensate``'s saga up to the failure; ``stored``: the result's payload as written
    instead of the one the tracker wrote."""
    engine = Engine([saga(refund)])
    state = None
    for number, event in enumerate(
        [
            Ordered(order_id="o-1", amount=Decimal("12.50")),
            Charged(order_id="o-1", amount=Decimal("12.50")),
        ]
    ):
        outcome = engine.handle(state, Incoming("o-1", event, f"e-{number}"), 10.0 + number)
        assert outcome.state is not None
        state = SagaState.from_bytes(outcome.state.to_bytes())
    assert state is not None
    result = state.steps["charge"].result
    assert result is not None
    if drop_from_result is not None:
        fields = result.fields()
        del fields[drop_from_result]
        result.payload = payload_json(fields)
    if stored is not None:
        result.payload = msgspec.Raw(stored)
    return engine.handle(state, Incoming("o-1", Lost(order_id="o-1"), "e-9"), 20.0)


def test_a_compensation_is_filled_from_the_payloads() -> None:
    refund = compensate(Refund)
    assert isinstance(refund, Refund)
    assert (refund.amount, refund.currency, refund.region) == (Decimal("12.50"), "EUR", "eu")


def test_an_older_result_without_a_defaulted_field_takes_the_models_default() -> None:
    """The result's model gives its default (as the model always did), not the start's value
    the payloads alone would have taken."""
    refund = compensate(Refund, drop_from_result="currency")
    assert isinstance(refund, Refund) and refund.currency == "EUR"


def test_a_stored_payload_that_is_not_an_object_parks_the_saga_with_the_reason() -> None:
    """A state a person or a tool wrote: read only when the compensation is built, and the
    saga is parked saying why, the tracker going on with the others."""
    outcome = fail_shipping(Refund, stored=b'["o-1", "12.50"]')
    assert outcome.state is not None and outcome.state.status is SagaStatus.FAILED
    assert outcome.emits == []
    assert any(
        "the stored payload of test.fill.Charged event e-1 is not a JSON object" in entry.action
        for entry in outcome.state.history
    )


def test_a_stored_payload_written_by_hand_is_read_as_written() -> None:
    """Spaces, a number in another notation: the text as written, the values it holds."""
    refund = compensate(Refund, stored=b'{ "order_id" : "o-1", "amount": 1.25e1 }')
    assert isinstance(refund, Refund) and refund.amount == Decimal("12.5")


def test_a_strict_command_refusing_text_is_filled_from_the_models() -> None:
    """A strict model refuses a decimal and a time given as text: the models' values fill it."""
    refund = compensate(StrictRefund)
    assert isinstance(refund, StrictRefund) and refund.amount == Decimal("12.50")


class QuantizedRefund(Refund):
    """A before-validator sees the input as it came: from the models a Decimal, from the
    payloads text (``'12.50'.quantize`` raises)."""

    event_type = "test.fill.QuantizedRefund"

    @field_validator("amount", mode="before")
    @classmethod
    def _cents(cls, value: Decimal) -> Decimal:
        return value.quantize(Decimal("0.01"))


class RoundedRefund(Refund):
    """A before-validator that, given the payloads' text instead of the models' Decimal, would
    keep something else without failing."""

    event_type = "test.fill.RoundedRefund"

    @field_validator("amount", mode="before")
    @classmethod
    def _whole(cls, value: object) -> object:
        return Decimal(round(value)) if isinstance(value, Decimal) else value


def test_a_command_that_validates_its_input_in_code_is_filled_from_the_models() -> None:
    refund = compensate(QuantizedRefund)
    assert isinstance(refund, QuantizedRefund) and refund.amount == Decimal("12.50")
    rounded = compensate(RoundedRefund)
    assert isinstance(rounded, RoundedRefund) and rounded.amount == Decimal("12")
