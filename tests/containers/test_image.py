"""The image as a deployment runs it: its HEALTHCHECK follows the poll loop, it runs as the
non-root user on a read-only root filesystem, and it stays small."""

from __future__ import annotations

import asyncio
from pathlib import Path

from builders import placed
from container_kit import (
    IMAGE,
    ROOT_MODULES,
    Engine,
    app,
    health,
    image_healthcheck,
    inspect,
    wait_for,
)
from runtime.runtime_kit import fill_orders, publish

from choreo._schemas import Catalog

MAX_IMAGE_MB = 400
"""Base (Debian's python3, about 210 MB here) plus the virtualenv: well under this."""


def test_healthy_once_assigned_unhealthy_when_the_poll_loop_stops_non_root_read_only(
    engine: Engine,
    kafka: str,
    isolated_schemas: Path,
) -> None:
    fill_orders(kafka, Catalog.load(isolated_schemas), 0, id_prefix="none")
    # The ledger handler sleeps 600 s on its first record: a handler holding the poll loop.
    container = app(
        engine,
        ["choreo", "run", "ledger_service"],
        kafka,
        isolated_schemas,
        mounts={ROOT_MODULES / "ledger_service.py": "/app/ledger_service.py"},
        LEDGER_FILE="/dev/null",
        LEDGER_DELAY_S="600",
    )
    with container:
        cid = container.get_wrapped_container().id
        probes = lambda: inspect(cid, "{{json .State.Health}}")  # noqa: E731
        healthy = lambda: health(engine, cid) == "healthy"  # noqa: E731
        wait_for("healthy (partitions assigned)", healthy, 120, 2, probes, container)

        code, user = container.exec(["id", "-u"])
        assert (code, user.decode().strip()) == (0, "10001")
        # Podman mounts a tmpfs on /tmp of a read-only container, Docker does not: not asked.
        for path in ("/app/services/written", "/opt/choreo/written", "/written"):
            code, output = container.exec(["touch", path])
            assert code != 0 and b"Read-only file system" in output, (path, output)

        asyncio.run(publish(kafka, isolated_schemas, [placed("held-1")]))
        wait_for("unhealthy (loop held)", lambda: health(engine, cid) == "unhealthy", 120, 2)
        # Alive and still holding the record: the probe, not a crash, made it unhealthy.
        assert inspect(cid, "{{.State.Status}}") == "running"


def test_image_is_small_and_its_healthcheck_survived_the_build(engine: Engine) -> None:
    size_mb = int(inspect(IMAGE, "{{.Size}}", "image")) / 1e6
    print(f"choreo-app:latest is {size_mb:.0f} MB")
    assert size_mb < MAX_IMAGE_MB
    assert "CHOREO_HEALTH_URL" in " ".join(image_healthcheck(engine))
