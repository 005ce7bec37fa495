"""What a restore needs of a state to arm its timer, read from the changelog's JSON unparsed.

A restore parsed every state (~25 us for the order saga's ~2.9 KB) only to learn when it next
needs the clock. :func:`peek` reads those five fields with two anchored regular expressions
instead, and answers None, so the caller parses, whenever the JSON is not laid out as
``SagaState`` writes it: the model's fields in declaration order, no spaces; ``saga_id``,
``saga``, ``version``, ``status`` first; ``sub_versions``, ``wake_at``, ``updated_at``,
``history`` last (:data:`LAID_OUT` checks the model still declares them so).

Why the fields found are the state's own, whatever its payloads hold: the last ``,"history":[``
in the JSON is the state's (a history entry's keys are some of its own six field names, and a
JSON string cannot hold an unescaped quote, so no string can look like a key); before it, the
last ``"sub_versions":{`` is the state's (that object's values are numbers); payloads, which
may have keys of any name, all come before it. The head's fields come first, after two
strings the expression skips.
"""

from __future__ import annotations

import json
import re
from typing import NamedTuple, Protocol

from choreo._saga.state import SagaState, SagaStatus

_NUMBER = rb"-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?"
_STRING = rb'"[^"\\]*(?:\\.[^"\\]*)*"'
_VERSION = _STRING + rb":-?\d+"
_HEAD = re.compile(
    rb'\{"saga_id":'
    + _STRING
    + rb',"saga":'
    + _STRING
    + rb',"version":(-?\d+),"status":"([a-z-]+)",',
    re.DOTALL,
)
_TAIL = re.compile(
    rb'"sub_versions":(\{(?:' + _VERSION + rb"(?:," + _VERSION + rb")*)?\}),"
    rb'"wake_at":(null|' + _NUMBER + rb'),"updated_at":(' + _NUMBER + rb'),"history":\[',
    re.DOTALL,
)
_HISTORY = b',"history":['
_FIELDS = SagaState.__struct_fields__
LAID_OUT = _FIELDS[:4] == ("saga_id", "saga", "version", "status") and _FIELDS[-4:] == (
    "sub_versions",
    "wake_at",
    "updated_at",
    "history",
)
"""Whether ``SagaState`` still writes the layout the expressions read (else: always parse)."""


class Timing(Protocol):
    """What the engine reads of a state to tell when it next needs the clock."""

    @property
    def version(self) -> int: ...

    @property
    def status(self) -> SagaStatus: ...

    @property
    def sub_versions(self) -> dict[str, int]: ...

    @property
    def wake_at(self) -> float | None: ...

    @property
    def updated_at(self) -> float: ...


class Peeked(NamedTuple):
    version: int
    status: SagaStatus
    sub_versions: dict[str, int]
    wake_at: float | None
    updated_at: float


def timing(data: bytes) -> Timing:
    """``data``'s timing fields: peeked when the layout is the known one, else parsed."""
    return peek(data) or SagaState.from_bytes(data)


def peek(data: bytes) -> Peeked | None:
    """``data``'s timing fields, or None when its layout is not the one expected."""
    if not LAID_OUT:
        return None
    head = _HEAD.match(data)
    end = data.rfind(_HISTORY) + len(_HISTORY)
    start = data.rfind(b'"sub_versions":{', 0, end)
    tail = None if start < 0 else _TAIL.match(data, start, end)
    if head is None or tail is None or tail.end() != end:
        return None
    try:
        status = SagaStatus(head[2].decode())
    except ValueError:
        return None
    wake_at = None if tail[2] == b"null" else float(tail[2])
    sub_versions = {} if tail[1] == b"{}" else json.loads(tail[1])
    return Peeked(int(head[1]), status, sub_versions, wake_at, float(tail[3]))
