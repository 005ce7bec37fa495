"""Waiting for a stack component: a slow start that keeps logging is waited for and reported,
a silent one fails naming its log, a crashed one fails naming its exit code."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from choreo._dev.component import ComponentError
from choreo._dev.readiness import Patience, await_ready, last_line

QUICK = Patience(stall_s=1.0, cap_s=20.0, every_s=0.4, poll_s=0.05)


class FileReady:
    """Ready when its marker file exists: what a real probe answers, minus the protocol."""

    name = "slowpoke"

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def healthy(self) -> bool:
        return self.marker.exists()


def spawn(script: str, log: Path) -> subprocess.Popen[bytes]:
    out = log.open("ab")
    return subprocess.Popen([sys.executable, "-c", script], stdout=out, stderr=out)


def test_a_start_longer_than_the_stall_limit_is_waited_for_while_it_logs(tmp_path: Path) -> None:
    marker, log = tmp_path / "ready", tmp_path / "c.log"
    # 3 s in all, past the 1 s stall limit, but a line every 0.3 s
    process = spawn(
        "import time, pathlib\n"
        "for i in range(10):\n"
        "    print(f'loaded {i + 1}/10 logs', flush=True); time.sleep(0.3)\n"
        f"pathlib.Path({str(marker)!r}).touch(); time.sleep(5)\n",
        log,
    )
    said: list[str] = []
    try:
        await_ready(FileReady(marker), log, said.append, process, QUICK)
    finally:
        process.kill()
        process.wait()
    assert said, "a 3 s wait with 0.4 s reports said nothing"
    assert all(line.startswith("slowpoke: still starting, ") for line in said)
    assert any("loaded " in line and "/10 logs" in line for line in said), said


def test_a_silent_start_fails_naming_the_log(tmp_path: Path) -> None:
    log = tmp_path / "c.log"
    process = spawn("import time; print('hello', flush=True); time.sleep(30)", log)
    try:
        with pytest.raises(ComponentError, match=r"slowpoke: not ready after .*silent.*c\.log"):
            await_ready(FileReady(tmp_path / "never"), log, lambda _: None, process, QUICK)
    finally:
        process.kill()
        process.wait()


def test_a_crashed_start_fails_with_its_exit_code(tmp_path: Path) -> None:
    log = tmp_path / "c.log"
    process = spawn("import sys; sys.exit(3)", log)
    with pytest.raises(ComponentError, match="exited with code 3"):
        await_ready(FileReady(tmp_path / "never"), log, lambda _: None, process, QUICK)


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"", ""),
        (b"one\ntwo\n\n  \n", "two"),
        (b"x" * 10_000, "x" * 137 + "..."),
        (b"\xff\xfe bad bytes\n", "\ufffd\ufffd bad bytes"),
    ],
)
def test_last_line(tmp_path: Path, content: bytes, expected: str) -> None:
    log = tmp_path / "c.log"
    log.write_bytes(content)
    assert last_line(log) == expected
    assert last_line(tmp_path / "missing.log") == ""
