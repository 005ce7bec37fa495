"""docker-compose.existing-stack.yml stays in step with docker-compose.yml's apps: every app
of the order flow is in it, nothing else, each on the host network with a probe port of its
own (on one network namespace two apps on one port would fail to start)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
ONE_SHOT_CDC = {"catalog-setup", "catalog-sync"}
"""Left out: they need Connect by its compose name; the README says how they run."""


def _services(name: str) -> dict[str, dict[str, Any]]:
    services: dict[str, dict[str, Any]] = yaml.safe_load((ROOT / name).read_text())["services"]
    return services


def test_the_override_covers_every_order_flow_app_each_on_its_own_probe_port() -> None:
    apps = {name for name, s in _services("docker-compose.yml").items() if s.get("build") == "."}
    override = _services("docker-compose.existing-stack.yml")
    assert set(override) == apps - ONE_SHOT_CDC
    assert all(s["network_mode"] == "host" for s in override.values())
    ports = [s["environment"]["CHOREO_METRICS_PORT"] for s in override.values()]
    assert len(set(ports)) == len(ports), ports
    for name, service in override.items():
        url = service["environment"].get("CHOREO_HEALTH_URL", "")
        port = service["environment"]["CHOREO_METRICS_PORT"]
        assert name in ("ingress", "choreo-saga-order") or f":{port}/readyz" in url, name
