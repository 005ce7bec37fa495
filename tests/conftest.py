"""Shared test fixtures; also puts tests/ on sys.path (pytest does for a rootless conftest),
so ``import builders`` works."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

ChoreoRun = Callable[..., subprocess.Popen[str]]


@pytest.fixture
def isolated_schemas(tmp_path: Path) -> Path:
    """The project's schemas with every topic renamed ``<topic>.<random>``: no old records."""
    return _isolate_schemas(tmp_path / "schemas")


@pytest.fixture(scope="module")
def module_schemas(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``isolated_schemas`` shared by one test module (one server process for all its tests)."""
    return _isolate_schemas(tmp_path_factory.mktemp("module") / "schemas")


def _isolate_schemas(target: Path) -> Path:
    shutil.copytree(ROOT / "schemas", target)
    catalog = tomllib.loads((ROOT / "schemas" / "catalog.toml").read_text())
    suffix = uuid.uuid4().hex[:8]
    lines = []
    for name, spec in catalog["topics"].items():
        events = ", ".join(f'"{e}"' for e in spec["events"])
        lines += [
            f'[topics."{name}.{suffix}"]',
            f"events = [{events}]",
            f'key = "{spec["key"]}"',
            f"partitions = {spec['partitions']}",
            f"scheduled = {'true' if spec.get('scheduled') else 'false'}",
            "",
        ]
    (target / "catalog.toml").write_text("\n".join(lines))
    return target


@pytest.fixture
def choreo_run(kafka: str, tmp_path: Path) -> Iterator[ChoreoRun]:
    """``choreo run MODULE ARGS...`` from the project's root, as a user starts it.

    ``path`` (the folder of the test's service modules) goes on its PYTHONPATH after the root;
    ``env`` is added to this process's environment. Its output goes to
    ``<module>-<n>.log`` in the test's tmp dir (n counts the processes started), which tests
    read. Every process still running is killed after the test.
    """
    started: list[subprocess.Popen[str]] = []

    def start(module: str, *args: str, path: Path, **env: str) -> subprocess.Popen[str]:
        log = tmp_path / f"{module.replace('.', '_')}-{len(started)}.log"
        with log.open("w") as output:
            process = subprocess.Popen(
                [sys.executable, "-m", "choreo._cli.main", "run", module, *args],
                cwd=ROOT,
                env={
                    **os.environ,
                    "PYTHONPATH": f"{ROOT}{os.pathsep}{path}",
                    "CHOREO_BOOTSTRAP_SERVERS": kafka,
                    **env,
                },
                stdout=output,
                stderr=subprocess.STDOUT,
                text=True,
            )
        started.append(process)
        return process

    yield start
    for process in started:
        if process.poll() is None:
            process.kill()
        process.wait()
