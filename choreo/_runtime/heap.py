"""Tune the garbage collector before the hot loop: freeze the start-up heap, collect less often;
and hand memory freed by a burst back to the system.

A service's start-up leaves tens of thousands of long-lived objects (modules, pydantic core
schemas, the catalog, generated readers and writers). Every full collection walks all of them
again, and handling records allocates enough (a model per event, its dicts) to trigger full
collections steadily: measured here, decoding the bench's ``OrderPlaced`` costs ~20% more CPU
per record with the start-up heap in the collected generations than frozen out of them. What
is frozen is never collected, so collect first: only live start-up objects stay.
"""

from __future__ import annotations

import ctypes
import gc

YOUNG_THRESHOLD = 20_000
"""Net new container objects between young collections (Python's default: 700). A poll of 500
records holds ~4,500 (each record's header list and tuples) until they are handled: at the
default, each poll's objects are traversed by several young collections and promoted before
they die; with this they are mostly freed by reference counting first."""


TRACKER_YOUNG_THRESHOLD = 200_000
"""The saga tracker's: a batch of 2,000 records keeps the states it parsed (tens of tracked
lists and dicts each) alive until it is sent, and every young collection traverses all of
them. At 20,000, young collections took ~6 us per event (0.46-0.53 s of a 75,000-event
``bench/saga.py throughput`` run, timed with ``gc.callbacks``); at 200,000, 0.02 s, and the
tracker did 16,200-17,500 events/s against 12,800-15,000 (2026-12-05, alternated). Garbage
without cycles is freed by reference counting either way; cycles wait longer."""


def tune_gc_for_serving(young: int = YOUNG_THRESHOLD) -> None:
    """Collect start-up garbage, move every surviving object out of the collector's view
    (``gc.freeze``) and collect the young generation less often (every ``young`` net new
    objects). For a process that runs one service or tracker: call it once, after start."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(young, *gc.get_threshold()[1:])


def gc_for_serving(tune: bool, young: int = YOUNG_THRESHOLD) -> str:
    """:func:`tune_gc_for_serving` when ``tune`` (the ``tune_gc`` setting); the line a
    process prints about its collector either way, since the change is process-wide."""
    if not tune:
        return "gc: Python's defaults (tune_gc = false)"
    tune_gc_for_serving(young)
    return (
        f"gc: start-up heap frozen ({gc.get_freeze_count():,} objects), young collections "
        f"every {young:,} new objects (tune_gc = false keeps Python's defaults)"
    )


_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
HEAP_TOP_KEPT = 2**20
"""The most free memory an arena keeps at its top: above this, glibc hands the top back as the
freeing happens."""
LARGE_ALLOCATION = 128 * 2**10
"""Allocations from this size on are mapped on their own, and unmapped when freed: glibc's
default, which it raises (up to 32 MiB) each time such a block is freed, and with it the
top an arena keeps (up to 64 MiB)."""


def hand_back_freed_memory() -> None:
    """Return memory freed by a burst to the system (glibc's ``malloc_trim``; elsewhere
    nothing). After a saga tracker restores 100,000 states, the changelog's JSON it read and
    packed stays resident, ~60-80 MB, as glibc keeps freed pages for reuse: counted against
    the container's memory limit though the tracker will never need it again. Call
    :func:`bound_kept_heap` before the burst: ``malloc_trim`` does not reach everything."""
    try:
        trim = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return
    trim(0)


def bound_kept_heap() -> None:
    """Fix glibc's thresholds (process-wide, glibc only) so a burst freed in another thread's
    arena is handed back: ``malloc_trim`` returns free pages inside every arena, but not the
    free top of a thread's arena, which glibc trims only as memory is freed, and only above a
    threshold it raises as large blocks are freed. A restore's fetches are such a burst, in
    librdkafka's thread: in 2 runs of 15 (and 1 of 8) of ``bench/saga.py memory`` that arena
    kept 48 MB after the restore, 2x the states it held. With these thresholds: none in 28
    (446-511 bytes a saga); with 32 MiB for large blocks, 2 in 10; with a 16 MiB top, up to 9
    MB more in 3 of 10. The tracker's loop took no more page faults (~82,000 over 75,000
    records either way) and a restore no longer (2.6-2.8 s per 100,000; 2026-12-06)."""
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return
    mallopt(_M_MMAP_THRESHOLD, LARGE_ALLOCATION)
    mallopt(_M_TRIM_THRESHOLD, HEAP_TOP_KEPT)
