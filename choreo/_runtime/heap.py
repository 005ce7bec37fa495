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
import os
from collections.abc import Iterator
from contextlib import contextmanager

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
BURST_THRESHOLDS = (128 * 2**10, 2**20)
"""During a burst: blocks from 128 KiB on mapped alone (glibc's starting point), and an arena's
free top over 1 MiB handed back as it is freed."""
STEADY_THRESHOLDS = (32 * 2**20, 64 * 2**20)
"""After it: the largest glibc's dynamic thresholds reach, which a loop's per-batch buffers
(the tracker's ~6 MiB of states unpacked at once) soon take them to. Kept at the burst's, the
tracker took 79,000-81,000 page faults a run against 48,000-51,000 and ran ~3% slower (four
alternated pairs of ``bench/saga.py throughput``, 2026-12-06)."""


def hand_back_freed_memory() -> None:
    """Return memory freed by a burst to the system (glibc's ``malloc_trim``; elsewhere
    nothing). After a saga tracker restores 100,000 states, the changelog's JSON it read and
    packed stays resident, ~60-80 MB, as glibc keeps freed pages for reuse: counted against
    the container's memory limit though the tracker will never need it again. It does not
    reach everything: see :func:`handing_back`."""
    try:
        trim = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return
    trim(0)


def malloc_tuning(tune: bool) -> tuple[bool, str]:
    """Whether to hand a burst's freed memory back with :func:`handing_back` (the ``tune_gc``
    setting, glibc, and no threshold set by the operator), and the line that says so."""
    if not tune:
        return False, "malloc: glibc's own thresholds (tune_gc = false)"
    tunables = os.environ.get("GLIBC_TUNABLES", "")
    if any(name in os.environ for name in _OPERATOR_SET) or "_threshold=" in tunables:
        return False, "malloc: thresholds as the environment sets them"
    if not hasattr(ctypes.CDLL(None), "mallopt"):
        return False, "malloc: not glibc's, left as it is"
    return True, (
        "malloc: glibc's thresholds fixed (process-wide), small during a restore so what it "
        "frees leaves the process, large after it"
    )


_OPERATOR_SET = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")
"""glibc's own variables for the thresholds; ``GLIBC_TUNABLES`` may set them too."""


@contextmanager
def handing_back(tune: bool) -> Iterator[None]:
    """Around a burst (a saga tracker's restore), when ``tune`` (:func:`malloc_tuning`): what
    it frees in any thread is handed back to the system. ``malloc_trim`` returns free pages
    inside every arena, but not the free top of a thread's arena, which glibc trims only as
    memory is freed, and only above a threshold it raises as large blocks are freed. A
    restore's fetches are such a burst, in librdkafka's thread: in 2 runs of 15 (and 1 of 8)
    of ``bench/saga.py memory`` that arena kept 48 MB after the restore, 2x the states it held.
    With :data:`BURST_THRESHOLDS` around the whole restore, its ``malloc_trim`` included:
    none in 8 (447-456 bytes a saga; 446-511 in 28 kept for good), and a restore took no longer
    (2.6-2.8 s per 100,000); around its reading only, 2 of 8 kept 8-9 MB more; with 32 MiB for
    large blocks, 2 of 10 kept 48; with a 16 MiB top, 3 of 10 kept up to 9 (2026-12-06).
    Setting either threshold ends glibc's dynamic ones for good: :data:`STEADY_THRESHOLDS`
    after the burst (seven alternated pairs of ``bench/saga.py throughput`` against glibc's
    own: the same CPU per event, 42,500-43,900 page faults a run against 45,700-50,200)."""
    if not tune:
        yield
        return
    _thresholds(*BURST_THRESHOLDS)
    try:
        yield
    finally:
        _thresholds(*STEADY_THRESHOLDS)


def _thresholds(mmap: int, trim: int) -> None:
    mallopt = ctypes.CDLL(None).mallopt
    mallopt(_M_MMAP_THRESHOLD, mmap)
    mallopt(_M_TRIM_THRESHOLD, trim)
