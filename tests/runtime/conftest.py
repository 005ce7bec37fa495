"""Services on the real broker, each test on its own fresh topics."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

ServiceProcess = Callable[..., subprocess.Popen[str]]


@pytest.fixture
def run_service(choreo_run: ServiceProcess) -> ServiceProcess:
    """Start ``choreo run MODULE`` as a user would; every process is stopped after the test."""

    def start(
        module: str, schemas: Path, config: Path | None = None, **env: str
    ) -> subprocess.Popen[str]:
        extra = ["--config", str(config)] if config else []
        return choreo_run(
            module, *extra, path=Path(__file__).parent, CHOREO_SCHEMAS_DIR=str(schemas), **env
        )

    return start
