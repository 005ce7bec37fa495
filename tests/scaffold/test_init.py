"""``choreo init``: the new project checks, lints and passes its own tests, on Kafka too."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import choreo
from choreo._cli.main import main
from choreo._dev import default_paths
from choreo._dev.settings import StackSettings
from choreo._scaffold import ScaffoldError, create_project

BIN = Path(sys.executable).parent


def _run(project: Path, *argv: str, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(
        argv, cwd=project, env=env, capture_output=True, text=True, timeout=240, check=False
    )
    assert done.returncode == 0, f"{' '.join(argv)}:\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("init") / "trips"
    assert main(["init", str(root)]) == 0
    return root


def test_the_new_project_is_schema_checked_lint_clean_and_typed(project: Path) -> None:
    assert "ok: 5 event types on 2 topics" in _run(
        project, str(BIN / "choreo"), "schemas", "--project", ".", "check"
    )
    _run(project, str(BIN / "ruff"), "check", ".")  # the project's own ruff settings
    _run(project, str(BIN / "ruff"), "format", "--check", ".")
    # An editable install is an import hook mypy cannot follow: point it at the sources,
    # read silently as an installed package is.
    typed = os.environ | {"MYPYPATH": str(Path(choreo.__file__).parents[1])}
    _run(project, str(BIN / "mypy"), "--strict", "--follow-imports=silent", "trips", env=typed)


def test_the_new_projects_broker_free_tests_pass(project: Path) -> None:
    out = _run(
        project, sys.executable, "-m", "pytest", "-q", "-m", "not stack", "-p", "no:cacheprovider"
    )
    assert "3 passed" in out


@pytest.mark.stack
def test_the_new_projects_stack_test_passes_on_the_real_broker(project: Path, kafka: str) -> None:
    settings = StackSettings()
    env = os.environ | {"CHOREO_STATE_DIR": str(default_paths().state)}  # reuse this stack
    assert kafka == settings.bootstrap_servers
    out = _run(
        project,
        sys.executable,
        "-m",
        "pytest",
        "-q",
        "-m",
        "stack",
        "-p",
        "no:cacheprovider",
        env=env,
    )
    assert "1 passed" in out


@pytest.mark.parametrize("name", ["Trips", "1trips", "trips-eu", "class", ""])
def test_a_name_that_cannot_be_a_package_is_refused_with_the_rule(
    tmp_path: Path, name: str
) -> None:
    with pytest.raises(ScaffoldError, match="lower-case Python identifier"):
        create_project(tmp_path / "p", name)


def test_a_directory_with_files_is_never_overwritten(tmp_path: Path) -> None:
    (tmp_path / "keep.txt").write_text("mine")
    with pytest.raises(ScaffoldError, match="not empty"):
        create_project(tmp_path, "trips")
    assert [p.name for p in tmp_path.iterdir()] == ["keep.txt"]
