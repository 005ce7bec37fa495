"""Saga states as memory holds them: deflated with a preset dictionary, ~2.9 KB -> ~260 bytes.

Most of one saga's JSON state is the same in all its instances (field names, step names, event
types, the start event's payload layout), so deflate with a preset dictionary (``zdict``) taken
from a state of the same saga codes little more than what differs: ids, times, amounts. The
dictionary is the first state this packer packs. Packed bytes never leave the process (the
changelog keeps plain JSON, which the CLI, the console and older trackers read), so the
dictionary never has to be stored or agreed on with anyone.

Measured with callgrind on the order saga's open state (bench/README.md): setting the
dictionary for each state (hashing it) cost more than deflating the state, so the packer
primes one compressor with it and copies that for each state; a 4 KB window and a small hash
table make the copy cheap. ~95,000 instructions a state, against ~282,000 for a fresh level-6
compressor with a 32 KB window, for 15 more bytes.
"""

from __future__ import annotations

import threading
import zlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from zlib import _Compress

LEVEL = 3
"""Level 1: ~303 bytes, 2: ~277, 3: ~262 at the same cost; 6: ~247 for twice the instructions."""
WBITS = -12
"""Raw deflate (no header or checksum: the bytes never leave memory), a 4 KB window: a state
longer than that refers back to less of the dictionary, and packs less well, never wrongly."""
MEM_LEVEL = 4
ZDICT_MAX = 4096
"""Only the window's worth of dictionary can be referred to."""


class Packer:
    """Packs and unpacks the states of one store (one dictionary for all of them)."""

    def __init__(self) -> None:
        self._zdict = b""
        self._primed: _Compress | None = None
        self._priming = threading.Lock()
        """Restore packs in the tracker's loop and commits in its commit thread: the first
        state packed must set the one dictionary both use."""

    def pack(self, data: bytes, head: bytes = b"") -> bytes:
        """``data`` deflated, behind ``head`` (the store's wake time: one object, one copy)."""
        primed = self._primed
        if primed is None:
            with self._priming:
                if self._primed is None:
                    self._zdict = data[:ZDICT_MAX]
                    self._primed = zlib.compressobj(
                        LEVEL, zlib.DEFLATED, WBITS, MEM_LEVEL, zlib.Z_DEFAULT_STRATEGY, self._zdict
                    )
                primed = self._primed
        deflate = primed.copy()
        return b"".join((head, deflate.compress(data), deflate.flush()))

    def unpack(self, packed: bytes | memoryview) -> bytes:
        inflate = zlib.decompressobj(WBITS, self._zdict)
        return inflate.decompress(packed) + inflate.flush()
