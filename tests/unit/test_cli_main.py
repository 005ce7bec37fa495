"""The top-level ``choreo`` command reads as a tool's help and says its version."""

from __future__ import annotations

from importlib import metadata

import pytest

from choreo._cli.main import main


def test_help_describes_the_tool_and_its_first_steps(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stop:
        main(["--help"])
    assert stop.value.code == 0
    out = capsys.readouterr().out
    assert "Entry point" not in out
    assert "choreography on Apache Kafka" in out
    assert "choreo dev up" in out and "choreo run services.orders" in out


def test_version_is_the_installed_distribution(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stop:
        main(["--version"])
    assert stop.value.code == 0
    assert capsys.readouterr().out.strip() == f"choreo {metadata.version('choreo')}"
