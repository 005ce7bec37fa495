"""Run the project's image as a deployment would: host network, read-only, non-root.

Every container reaches the local stack's broker on 127.0.0.1 (host network), so each gets
its own probe port. Podman 4.3 runs no healthchecks by itself without systemd: ``health``
runs the image's HEALTHCHECK once, as Docker's timer would, and returns the status.
"""

from __future__ import annotations

import json
import os
import shlex
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

IMAGE = "choreo-app:latest"
ROOT_MODULES = Path(__file__).resolve().parents[1] / "runtime"
"""Test services (ledger_service.py) mounted into the image's /app like a user's own module."""
GRACE_S = 30
"""The stop grace period given to ``docker stop`` (choreo's CHOREO_SHUTDOWN_GRACE_S default)."""


@dataclass(frozen=True)
class Engine:
    docker_host: str
    """Empty for the Docker engine's default socket."""
    podman: bool
    containers_conf: Path
    """Podman's settings (runc, ulimits) the script wrote; unused with Docker."""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def app(
    engine: Engine,
    command: list[str],
    kafka: str,
    schemas: Path,
    mounts: dict[Path, str] | None = None,
    restart: str = "no",
    **env: str,
) -> Any:  # a testcontainers DockerContainer (imported late: it reads its settings at import)
    """A DockerContainer of the image running ``command`` against ``kafka`` (not started).

    The schemas (their topics renamed per test) are mounted read-only at /schemas; the root
    filesystem is read-only, as a hardened deployment runs it. ``restart`` is the restart
    policy (``on-failure``: at most 5 restarts).
    """
    from testcontainers.core.container import DockerContainer

    port = free_port()
    container = (
        DockerContainer(IMAGE)
        .with_command(command)
        .with_envs(
            CHOREO_BOOTSTRAP_SERVERS=kafka,
            CHOREO_SCHEMAS_DIR="/schemas",
            CHOREO_METRICS_PORT=str(port),
            CHOREO_HEALTH_URL=f"http://127.0.0.1:{port}/readyz",
            OTEL_TRACES_EXPORTER="none",
            **env,
        )
        .with_volume_mapping(schemas, "/schemas", "ro")
        .with_kwargs(
            network_mode="host",
            read_only=True,
            healthcheck=quick_healthcheck(engine),
            restart_policy={
                "Name": restart,
                "MaximumRetryCount": 5 if restart == "on-failure" else 0,
            },
        )
    )
    for host, inside in (mounts or {}).items():
        mode = "rw" if host.is_dir() else "ro"
        container.with_volume_mapping(host, inside, mode)
    return container


def image_healthcheck(engine: Engine) -> list[str]:
    """The image's HEALTHCHECK command (Podman 4.3's Docker API leaves it out of an image's
    inspect, though its containers run it: ask Podman itself there)."""
    cli = ["podman", "image"] if engine.podman else ["docker", "image"]
    shown = subprocess.run(
        [*cli, "inspect", "-f", "{{json .Config.Healthcheck}}", IMAGE],
        env=os.environ | {"CONTAINERS_CONF": str(engine.containers_conf)},
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    config = json.loads(shown.stdout) or {}
    test: list[str] = config.get("Test") or []
    return test


def quick_healthcheck(engine: Engine) -> dict[str, object]:
    """The image's own HEALTHCHECK command on a test's clock: no 30 s start period, two
    failures to turn unhealthy (the timings are deployment settings, the command is the image's).
    """
    second = 1_000_000_000
    command = image_healthcheck(engine)
    assert command[0] == "CMD", command
    return {
        # As one shell line: Podman 4.3's Docker API splits a CMD list's arguments on spaces.
        "test": ["CMD-SHELL", shlex.join(command[1:])],
        "interval": 2 * second,
        "timeout": 3 * second,
        "retries": 2,
        "start_period": second,
    }


def health(engine: Engine, container_id: str) -> str:
    """The HEALTHCHECK's status after one more run of it (Docker's own timer runs it too)."""
    if engine.podman:
        subprocess.run(
            ["podman", "healthcheck", "run", container_id],
            env=os.environ | {"CONTAINERS_CONF": str(engine.containers_conf)},
            capture_output=True,
            timeout=30,
        )
    return inspect(container_id, "{{.State.Health.Status}}")


def inspect(name: str, template: str, kind: str = "container") -> str:
    """``docker container|image inspect -f template name``."""
    shown = subprocess.run(
        ["docker", kind, "inspect", "-f", template, name],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return shown.stdout.strip()


def wait_for(
    what: str,
    check: Callable[[], bool],
    timeout_s: float,
    every_s: float = 1,
    status: Callable[[], str] = str,
    container: Any = None,
) -> None:
    """Poll ``check`` until it holds; fail naming ``what`` after ``timeout_s``, with ``status()``
    and the end of ``container``'s log."""
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            logs = b"" if container is None else container.get_wrapped_container().logs(tail=40)
            tail = logs.decode(errors="replace")
            raise AssertionError(f"not within {timeout_s:.0f} s: {what} ({status()})\n{tail}")
        time.sleep(every_s)


def writable_dir(path: Path) -> Path:
    """A host directory the image's user (uid 10001) can write to, for a bind mount."""
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(0o777)
    return path
