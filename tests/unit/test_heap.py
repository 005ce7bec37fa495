"""``choreo._runtime.heap``, in child processes: it changes the collector and the allocator
process-wide."""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest

from choreo._runtime.heap import malloc_tuning

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


BURST = """
import ctypes, os, sys, threading
from choreo._runtime.heap import hand_back_freed_memory, handing_back

libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
libc.memset.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_size_t]


def resident_mb():
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


big = libc.malloc(16 << 20)  # a large block freed: glibc raises its thresholds
libc.memset(big, 1, 16 << 20)
libc.free(big)
before = resident_mb()


def burst():  # 30 MB in this thread's own arena, all of it freed, as a restore's fetches
    blocks = [libc.malloc(40 << 10) for _ in range(750)]
    for block in blocks:
        libc.memset(block, 1, 40 << 10)
    for block in blocks:
        libc.free(block)


with handing_back(sys.argv[1] == "handed back"):
    thread = threading.Thread(target=burst)
    thread.start()
    thread.join()
hand_back_freed_memory()
print(resident_mb() - before)
"""


def _kept_after_burst_mb(mode: str) -> float:
    out = subprocess.run(
        [sys.executable, "-c", BURST, mode], capture_output=True, text=True, check=True
    )
    return float(out.stdout)


@pytest.mark.skipif(
    not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc",
    reason="glibc's allocator",
)
def test_a_burst_freed_in_another_thread_is_handed_back() -> None:
    if _kept_after_burst_mb("default") < 20:
        pytest.skip("this glibc hands the burst back with its own thresholds")
    assert malloc_tuning(True)[0]  # what a tracker does with the default settings
    assert _kept_after_burst_mb("handed back") < 5


@pytest.mark.parametrize(
    ("tune", "environment", "line"),
    [
        (False, {}, "malloc: glibc's own thresholds (tune_gc = false)"),
        (True, {"MALLOC_TRIM_THRESHOLD_": "4096"}, "malloc: thresholds as the environment sets"),
        (True, {"GLIBC_TUNABLES": "glibc.malloc.mmap_threshold=65536"}, "as the environment"),
    ],
)
def test_the_allocator_is_left_alone_when_told_or_tuned_by_the_operator(
    monkeypatch: pytest.MonkeyPatch, tune: bool, environment: dict[str, str], line: str
) -> None:
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    tuned, said = malloc_tuning(tune)
    assert (tuned, line in said) == (False, True), said
