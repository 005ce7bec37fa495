"""The project's image, built (or found up to date) once per session by the script CI runs.

``make test`` builds it before pytest starts, so here the script only confirms the cache;
run alone, this file's tests build it themselves. The engine's socket is handed to
testcontainers, which drives every container of these tests.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from container_kit import Engine

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def engine() -> Engine:
    """Docker, or the Podman service the script prepared, with choreo-app:latest built."""
    built = subprocess.run(
        [str(ROOT / "infra/containers/image.sh")],
        capture_output=True,
        text=True,
        timeout=900,
    )
    if built.returncode != 0:
        pytest.fail(f"infra/containers/image.sh failed:\n{built.stderr[-3000:]}")
    docker_host = built.stdout.strip().splitlines()[-1] if built.stdout.strip() else ""
    if docker_host:
        os.environ["DOCKER_HOST"] = docker_host
    # Ryuk's image cannot be pulled where no registry answers; each test removes its own.
    os.environ["TESTCONTAINERS_RYUK_DISABLED"] = "true"
    # The tests talk to the containers over the host network, never through mapped ports.
    os.environ["TESTCONTAINERS_CONNECTION_MODE"] = "docker_host"
    state = Path(os.environ.get("CHOREO_STATE_DIR", ROOT / ".choreo")) / "containers"
    podman = docker_host.endswith("podman.sock")
    return Engine(docker_host, podman, state / "containers.conf")
