"""Saga states as memory holds them: zstd with a dictionary, ~2.3 KB -> ~260 bytes (open).

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

A committed batch's states are packed in its commit thread, all in one call
(:meth:`Packer.pack_many`, zstd's ``multi_compress_to_buffer``), which lets go of the GIL once
for the batch: one handover per batch (up to 2,000 states), not two per state, and the loop
thread, the tracker's bottleneck, decides the next batch meanwhile (2026-12-05, three
alternated pairs of ``bench/saga.py throughput``: the loop thread 57-60 -> 50-55 us per event,
1.05x the events/s). The loop thread packs what a restore reads (:meth:`Packer.pack`), and
unpacks the states a batch needs in one call too (:meth:`Packer.unpack_many`): one at a time,
each let go of the GIL and took it back, and a commit thread waiting for the GIL ran in between
while the loop thread waited its turn (2026-12-05, three alternated pairs: 14,000-15,000 ->
15,800-17,900 events/s, the loop thread 57-61 -> 47-53 us per event).
zstd's contexts are not safe to share between threads, so each of those two uses its own
compressor, and the batch compressor is taken under a lock: commit threads take turns, except
one given up as stuck, which may still be packing when the next one starts.
"""

from __future__ import annotations

import threading

import zstandard

LEVEL = 1
"""Level 3: the same size for the bench's order saga (258 bytes a state), 12% more time to
pack a batch (4.5 -> 5.2 us a state, alternated three times, 2026-12-05); 5: ~45 bytes less
for twice the time."""
_MAGIC = b"\x28\xb5\x2f\xfd"
"""A zstd frame's first 4 bytes, which packed states go without."""
ZDICT_MAX = 16384
"""A first state longer than this gives only its start as the dictionary: states are ~3 KB."""


class Packer:
    """Packs and unpacks the states of one store (one dictionary for all of them)."""

    def __init__(self) -> None:
        self._compressor: zstandard.ZstdCompressor | None = None
        self._batch_compressor: zstandard.ZstdCompressor | None = None
        self._decompressor = zstandard.ZstdDecompressor(format=zstandard.FORMAT_ZSTD1_MAGICLESS)
        self._batch_decompressor: zstandard.ZstdDecompressor | None = None
        self._priming = threading.Lock()
        self._batching = threading.Lock()

    def pack(self, data: bytes, head: bytes = b"") -> bytes:
        """``data`` compressed, behind ``head`` (the store's wake time: one object, one copy)."""
        compressor = self._compressor
        if compressor is None:
            compressor = self._prime(data)[0]
        packed = compressor.compress(data)
        return b"".join((head, packed)) if head else packed

    def pack_many(self, datas: list[bytes]) -> list[bytes]:
        """Each of ``datas`` compressed, in one call: the commit thread's (see the module)."""
        if not datas:
            return []
        compressor = self._batch_compressor
        if compressor is None:
            compressor = self._prime(datas[0])[1]
        with self._batching:
            try:
                sources: list[bytes | bytearray | memoryview] = list(datas)
                packed = compressor.multi_compress_to_buffer(sources)
            except (ValueError, NotImplementedError):
                # Inputs all empty (no state is), or python-zstandard's CFFI backend (PyPy),
                # which has no batch call: one by one, on the same compressor.
                return [compressor.compress(data) for data in datas]
            return [packed[i].tobytes() for i in range(len(packed))]

    def unpack(self, packed: bytes | memoryview) -> bytes:
        return self._decompressor.decompress(packed)

    def unpack_many(self, packed: list[bytes | memoryview]) -> list[bytes]:
        """Each of ``packed`` unpacked, in one call: the loop thread's, for a batch's states
        (see the module). zstd's batch call reads whole frames only: each gets its magic
        number back for it."""
        decompressor = self._batch_decompressor
        if decompressor is None or not packed:
            return [self.unpack(item) for item in packed]
        frames = [b"".join((_MAGIC, item)) for item in packed]
        try:
            # python-zstandard 0.25 corrupts the heap when every frame of a batch is empty
            # (found by this module's tests): empty ones (a changelog record with an empty
            # value, held as it is) are left out of the call, as nothing needs unpacking.
            sizes = [zstandard.frame_content_size(frame) for frame in frames]
            if min(sizes) < 0:  # a size not written: not a frame this packer made
                raise ValueError("frame content size unknown")
            whole: list[bytes | bytearray | memoryview] = [
                frame for frame, size in zip(frames, sizes, strict=True) if size > 0
            ]
            found = decompressor.multi_decompress_to_buffer(whole) if whole else None
        except (zstandard.ZstdError, ValueError, NotImplementedError):
            return [self.unpack(item) for item in packed]  # as above: CFFI has no batch call
        unpacked = iter(() if found is None else (found[i].tobytes() for i in range(len(found))))
        return [next(unpacked) if size > 0 else b"" for size in sizes]

    def _prime(self, data: bytes) -> tuple[zstandard.ZstdCompressor, zstandard.ZstdCompressor]:
        """Compress and decompress with the start of ``data`` as the dictionary from now on,
        unless the other thread primed first."""
        with self._priming:
            if self._compressor is None or self._batch_compressor is None:
                zdict = data[:ZDICT_MAX]
                dictionary = zstandard.ZstdCompressionDict(
                    zdict, dict_type=zstandard.DICT_TYPE_RAWCONTENT
                )
                params = zstandard.ZstdCompressionParameters.from_level(
                    LEVEL,
                    format=zstandard.FORMAT_ZSTD1_MAGICLESS,
                    write_content_size=True,  # what one-shot decompression sizes its output by
                    write_checksum=False,
                    write_dict_id=False,
                )
                if zdict:
                    dictionary.precompute_compress(compression_params=params)
                self._decompressor = zstandard.ZstdDecompressor(
                    dict_data=dictionary, format=zstandard.FORMAT_ZSTD1_MAGICLESS
                )
                self._batch_decompressor = zstandard.ZstdDecompressor(dict_data=dictionary)
                self._batch_compressor = zstandard.ZstdCompressor(
                    dict_data=dictionary, compression_params=params
                )
                self._compressor = zstandard.ZstdCompressor(
                    dict_data=dictionary, compression_params=params
                )
            return self._compressor, self._batch_compressor
