"""Services on the real broker, each test on its own fresh topics."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


ServiceProcess = Callable[..., subprocess.Popen[str]]


@pytest.fixture
def run_service(kafka: str, tmp_path: Path) -> Iterator[ServiceProcess]:
    """Start ``choreo run MODULE`` as a user would; every process is stopped after the test."""
    started: list[subprocess.Popen[str]] = []

    def start(
        module: str, schemas: Path, config: Path | None = None, **env: str
    ) -> subprocess.Popen[str]:
        log = (tmp_path / f"{module.replace('.', '_')}-{len(started)}.log").open("w")
        extra = ["--config", str(config)] if config else []
        process = subprocess.Popen(
            [sys.executable, "-m", "choreo._cli.main", "run", module, *extra],
            cwd=ROOT,
            env={
                **os.environ,
                "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'tests' / 'runtime'}",
                "CHOREO_BOOTSTRAP_SERVERS": kafka,
                "CHOREO_SCHEMAS_DIR": str(schemas),
                **env,
            },
            stdout=log,
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
