"""Tune the garbage collector before the hot loop: freeze the start-up heap, collect less often.

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


def hand_back_freed_memory() -> None:
    """Return memory freed by a burst to the system (glibc's ``malloc_trim``; elsewhere
    nothing). After a saga tracker restores 100,000 states, the changelog's JSON it read and
    packed stays resident, ~60-80 MB, as glibc keeps freed pages for reuse: counted against
    the container's memory limit though the tracker will never need it again."""
    try:
        trim = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return
    trim(0)
