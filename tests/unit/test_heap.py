"""``tune_gc_for_serving``, in a child process: it changes the collector process-wide."""

from __future__ import annotations

import subprocess
import sys

CHILD = """
import gc
from choreo._runtime.heap import YOUNG_THRESHOLD, tune_gc_for_serving
import choreo._runtime.runner  # a service's start-up heap
before = gc.get_freeze_count()
tune_gc_for_serving()
print(before, gc.get_freeze_count(), gc.get_threshold()[0] == YOUNG_THRESHOLD, gc.isenabled())
"""


def test_the_startup_heap_is_frozen_and_young_collections_are_rarer() -> None:
    out = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, check=True)
    before, frozen, threshold_set, enabled = out.stdout.split()
    assert (int(before), threshold_set, enabled) == (0, "True", "True")
    assert int(frozen) > 10_000  # the modules, schemas and classes imported so far
