"""The whole order pipeline end to end: ``python -m demo`` as ``make demo`` runs it."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from demo.traffic import REJECTION_COMMENT

pytestmark = pytest.mark.stack
ROOT = Path(__file__).resolve().parents[2]


def _demo(*args: str) -> str:
    """Run the demo, assert it succeeded with every scenario as expected; its output."""
    result = subprocess.run(
        [sys.executable, "-m", "demo", "--timeout", "180", *args],
        cwd=ROOT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        capture_output=True,
        text=True,
        timeout=420,
    )
    out = result.stdout + result.stderr
    assert result.returncode == 0, out[-12000:]  # the summary, then each process's last lines
    assert "Every saga ended as its scenario expects." in out
    rows = dict(re.findall(r"^(\S[\w ,]+?)\s{2,}\d+\s+\S.*?(\d+/\d+)\s*$", out, re.MULTILINE))
    assert len(rows) == 13, out  # every scenario ran (the plan has each at least once)
    assert all(int(a) == int(b) for a, b in (v.split("/") for v in rows.values())), rows
    assert re.search(r"choreo\.dlq\.orders\.shop\.orders\s+\+1$", out, re.MULTILINE), out
    told = re.search(r"customers told why their order did not go through: (\d+) of (\d+) ", out)
    assert told is not None and told[1] == told[2] != "0", out
    assert f'read: "Your order was not approved: {REJECTION_COMMENT}"' in out, out
    return out


def test_every_scenario_ends_as_expected_with_dlq_traces_and_the_cdc_pipeline(
    kafka: str, postgres: str, connect: str, jaeger: str
) -> None:
    out = _demo("--orders", "60", "--products", "400")
    # a Jaeger UI link, or the console's saga page where this Jaeger has no UI (local stack)
    link = r"(?:/trace/[0-9a-f]{32}|:8070/saga\?saga=order&id=\S+)"
    traces = re.findall(link + r"\s+\((\d+) spans from (\d+) services", out)
    assert len(traces) == 2 and all(int(spans) > 5 for spans, _ in traces), out
    cdc = re.search(r"400 changes in \d+ batches .*: (\d+) loaded, (\d+) rejected", out)
    assert cdc is not None and int(cdc[1]) + int(cdc[2]) == 400, out


def test_services_and_the_tracker_killed_mid_run_still_end_every_saga_as_expected(
    kafka: str, postgres: str, connect: str, jaeger: str
) -> None:
    out = _demo("--orders", "90", "--products", "100", "--chaos")
    kills = re.findall(r"^SIGKILLed and restarted (.+) before order (\d+)$", out, re.MULTILINE)
    assert kills == [
        ("payments, inventory", "30"),
        ("shipping, saga-tracker, approvals, notifications", "60"),
    ], out
