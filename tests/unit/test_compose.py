"""docker-compose.yml and the local stack must be the same stack (no Docker engine here)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from choreo._dev import connect, jaeger, kafka, postgres
from choreo._dev.settings import StackSettings

COMPOSE = Path(__file__).parents[2] / "docker-compose.yml"


def _services() -> dict[str, Any]:
    services: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())["services"]
    return services


def _published(service: dict[str, Any]) -> set[int]:
    return {int(mapping.split(":")[-2]) for mapping in service.get("ports", [])}


def test_compose_publishes_the_local_stack_ports_on_loopback(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in [n for n in os.environ if n.startswith("CHOREO_") and n.endswith("_PORT")]:
        monkeypatch.delenv(name)  # compare with the defaults, not this run's overrides
    settings = StackSettings()
    services = _services()
    assert _published(services["kafka"]) == {settings.kafka_port, settings.kafka_secure_port}
    assert _published(services["postgres"]) == {settings.postgres_port}
    assert _published(services["connect"]) == {settings.connect_port}
    assert _published(services["jaeger"]) == {
        settings.jaeger_port,
        settings.otlp_grpc_port,
        settings.otlp_http_port,
    }
    for service in services.values():
        assert all(mapping.startswith("127.0.0.1:") for mapping in service.get("ports", []))


def test_compose_runs_the_same_versions_as_the_local_stack() -> None:
    services = _services()
    assert services["kafka"]["image"].endswith(f":{kafka.KAFKA_VERSION}")
    assert services["connect"]["image"].endswith(f":{connect.DEBEZIUM_VERSION}")
    assert services["jaeger"]["image"].endswith(f":{jaeger.JAEGER_VERSION}")


def test_compose_postgres_and_connect_match_local_credentials_and_topics() -> None:
    services = _services()
    env = services["postgres"]["environment"]
    assert (env["POSTGRES_USER"], env["POSTGRES_PASSWORD"], env["POSTGRES_DB"]) == (
        postgres.USER,
        postgres.PASSWORD,
        postgres.DATABASE,
    )
    assert "wal_level=logical" in services["postgres"]["command"]
    connect_env = services["connect"]["environment"]
    assert connect_env["GROUP_ID"] == connect.GROUP_ID
    assert {
        connect_env[k]
        for k in ("CONFIG_STORAGE_TOPIC", "OFFSET_STORAGE_TOPIC", "STATUS_STORAGE_TOPIC")
    } == {f"{connect.TOPIC_PREFIX}_{kind}" for kind in ("configs", "offsets", "status")}


def test_compose_kafka_has_the_local_secure_listener_and_authorizer(tmp_path: Path) -> None:
    """Same mechanisms, super users and authorizer as the broker ``choreo dev up`` writes."""
    env = _services()["kafka"]["environment"]
    props = kafka.Kafka()._properties(tmp_path / "log", tmp_path / "tls")
    local = dict(line.split("=", 1) for line in props.splitlines() if "=" in line)
    assert env["KAFKA_SASL_ENABLED_MECHANISMS"] == local["sasl.enabled.mechanisms"]
    assert env["KAFKA_SUPER_USERS"] == local["super.users"]
    assert env["KAFKA_AUTHORIZER_CLASS_NAME"] == local["authorizer.class.name"]
    jaas = local["listener.name.sasl_ssl.plain.sasl.jaas.config"]
    assert env["KAFKA_LISTENER_NAME_SASL__SSL_PLAIN_SASL_JAAS_CONFIG"] == jaas
    assert "SASL_SSL://127.0.0.1:9094" in env["KAFKA_ADVERTISED_LISTENERS"]
