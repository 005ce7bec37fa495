"""An encoded record on its way to a producer: what emits, alarms and replays become.

Its own module, below the emitter and the handler context that both pass it
around, so that the context (which handlers import) does not import the
emitter and, through it, the runtime's instrumentation.
"""

from __future__ import annotations

from typing import NamedTuple

from choreo._transport.base import Headers


class Outbound(NamedTuple):
    """An encoded event ready for the producer (kept as is when it must be re-sent)."""

    topic: str
    key: bytes
    value: bytes
    headers: Headers
