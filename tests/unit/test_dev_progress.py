"""First-run steps say what they do while they do it; cached runs stay quiet."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from choreo._dev.maven import MARKER, fetch_jars
from choreo._dev.progress import long_step


def test_a_long_step_reports_elapsed_time_and_growth_until_it_ends(tmp_path: Path) -> None:
    said: list[str] = []
    filled = threading.Event()

    def download() -> None:
        for i in range(5):
            (tmp_path / f"part{i}").write_bytes(b"x" * 400_000)
            time.sleep(0.05)
        filled.set()

    with long_step("maven: fetching kafka jars", tmp_path, say=said.append, every_s=0.02):
        writer = threading.Thread(target=download)
        writer.start()
        writer.join()
    assert filled.is_set()
    assert said[0] == "maven: fetching kafka jars (first run only; later runs reuse the cache)"
    interim = said[1:-1]
    assert interim and all(line.startswith("maven: fetching kafka jars: ") for line in interim)
    assert "MB so far" in interim[-1]
    assert said[-1].startswith("maven: fetching kafka jars: done in ")
    assert "2 MB in all" in said[-1]  # 5 x 400 kB


def test_a_failed_step_says_so_and_raises(tmp_path: Path) -> None:
    said: list[str] = []
    with pytest.raises(RuntimeError), long_step("jaeger: go build", say=said.append):
        raise RuntimeError("go missing")
    assert said[-1].startswith("jaeger: go build: failed after ")
    assert not any("done in" in line for line in said)


def test_jars_already_fetched_print_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dest = tmp_path / "kafka"
    dest.mkdir()
    (dest / MARKER).write_text("done\n")
    fetch_jars(tmp_path / "no-such-pom.xml", dest)
    assert capsys.readouterr().out == ""
