"""``choreo dlq`` as a user runs it, against the test's broker: one helper for every DLQ test."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run_dlq(kafka: str, *args: str) -> subprocess.CompletedProcess[str]:
    """``choreo dlq ARGS`` in a subprocess (its exit code and output are what the user sees)."""
    return subprocess.run(
        [sys.executable, "-m", "choreo._cli.main", "dlq", *args],
        cwd=ROOT,
        env={**os.environ, "CHOREO_BOOTSTRAP_SERVERS": kafka},
        capture_output=True,
        text=True,
        timeout=120,
    )
