"""Saga states as memory holds them: zstd with a dictionary, ~2.9 KB -> ~270 bytes.

Most of one saga's JSON state is the same in all its instances (field names, step names, event
types, the start event's payload layout), so compressing with a dictionary taken from a state
of the same saga codes little more than what differs: ids, times, amounts. The dictionary is
the first state this packer packs. Packed bytes never leave the process (the changelog keeps
plain JSON, which the CLI, the console and older trackers read), so the dictionary never has
to be stored or agreed on with anyone, and frames carry no magic number, dictionary id or
checksum (12 bytes a saga at 100,000 open sagas).

zstd, not zlib's deflate with a preset dictionary (what this was until 2026-12-04): measured
on the bench's order saga's states (bench/README.md), packing 14.4 -> 6.7 us and unpacking
6.3 -> 4.5 us a state for about the same size, and the tracker 1.22x the events/s once the
packing also moved from its commit thread to its loop (``tracker._send``): packed in the
commit thread, every state's compression let go of the GIL and took it back, a handover
between two busy threads per state that cost more than the packing.

One thread packs and unpacks (the tracker's loop: its batches and its restores): zstd's
compression and decompression contexts are not safe to share between threads.
"""

from __future__ import annotations

import zstandard

LEVEL = 3
"""Level 1: ~9 bytes more a state for ~0.5 us less; 5: ~45 bytes less for twice the time."""
ZDICT_MAX = 16384
"""A first state longer than this gives only its start as the dictionary: states are ~3 KB."""


class Packer:
    """Packs and unpacks the states of one store (one dictionary for all of them)."""

    def __init__(self) -> None:
        self._compressor: zstandard.ZstdCompressor | None = None
        self._decompressor = zstandard.ZstdDecompressor(format=zstandard.FORMAT_ZSTD1_MAGICLESS)

    def pack(self, data: bytes, head: bytes = b"") -> bytes:
        """``data`` compressed, behind ``head`` (the store's wake time: one object, one copy)."""
        compressor = self._compressor
        if compressor is None:
            compressor = self._prime(data[:ZDICT_MAX])
        packed = compressor.compress(data)
        return b"".join((head, packed)) if head else packed

    def unpack(self, packed: bytes | memoryview) -> bytes:
        return self._decompressor.decompress(packed)

    def _prime(self, zdict: bytes) -> zstandard.ZstdCompressor:
        """Compress and decompress with ``zdict`` from now on."""
        dictionary = zstandard.ZstdCompressionDict(zdict, dict_type=zstandard.DICT_TYPE_RAWCONTENT)
        params = zstandard.ZstdCompressionParameters.from_level(
            LEVEL,
            format=zstandard.FORMAT_ZSTD1_MAGICLESS,
            write_content_size=True,  # what one-shot decompression sizes its output by
            write_checksum=False,
            write_dict_id=False,
        )
        if zdict:
            dictionary.precompute_compress(compression_params=params)
        self._compressor = zstandard.ZstdCompressor(dict_data=dictionary, compression_params=params)
        self._decompressor = zstandard.ZstdDecompressor(
            dict_data=dictionary, format=zstandard.FORMAT_ZSTD1_MAGICLESS
        )
        return self._compressor
