"""docker-compose.yml and the local stack must be the same stack (no Docker engine here)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from choreo import load_config
from choreo._dev import connect, jaeger, kafka, postgres, registry
from choreo._dev.settings import StackSettings
from choreo._docs.model import discover
from choreo._schemas import Catalog

COMPOSE = Path(__file__).parents[2] / "docker-compose.yml"


def _services() -> dict[str, Any]:
    services: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())["services"]
    return services


def _published(service: dict[str, Any]) -> set[int]:
    return {int(mapping.split(":")[-2]) for mapping in service.get("ports", [])}


def _default_stack(monkeypatch: pytest.MonkeyPatch) -> StackSettings:
    """The local stack's default ports, not this run's ``CHOREO_*_PORT`` overrides."""
    for name in [n for n in os.environ if n.startswith("CHOREO_") and n.endswith("_PORT")]:
        monkeypatch.delenv(name)
    return StackSettings()


def test_compose_publishes_the_local_stack_ports_on_loopback(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = _default_stack(monkeypatch)
    services = _services()
    assert _published(services["kafka"]) == {settings.kafka_port, settings.kafka_secure_port}
    assert _published(services["postgres"]) == {settings.postgres_port}
    assert _published(services["connect"]) == {settings.connect_port}
    assert _published(services["schema-registry"]) == {settings.registry_port}
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
    assert services["schema-registry"]["image"].endswith(f":{registry.APICURIO_VERSION}")


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


# The project's own processes: one image, one container per service, tracker and ingress.

ROOT = COMPOSE.parent
DOCKERFILE = ROOT / "Dockerfile"


def _apps() -> dict[str, dict[str, Any]]:
    """The compose services built from the project's Dockerfile."""
    return {name: s for name, s in _services().items() if s.get("build") == "."}


def test_compose_runs_every_service_module_the_saga_trackers_and_the_ingress(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(ROOT)  # services/ is imported from the project root, as the CLI does
    system = discover("services", Catalog.load(ROOT / "schemas"), {})
    by_kind = {
        kind: {a.module for a in system.applications if a.kind == kind}
        for kind in ("service", "saga tracker")
    }
    commands = [app["command"] for app in _apps().values()]
    assert {c[2] for c in commands if c[:2] == ["choreo", "run"]} == by_kind["service"]
    assert {c[3] for c in commands if c[:3] == ["choreo", "saga", "run"]} == by_kind["saga tracker"]
    [ingress] = [c for c in commands if c[:2] == ["choreo", "ingress"]]
    routes = load_config(ROOT / ingress[ingress.index("--config") + 1], environ={}).ingress
    assert routes.routes, "the ingress config routes nothing"
    assert _published(_apps()["ingress"]) == {routes.port}


def test_compose_apps_reach_the_stack_as_the_local_stack_does(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = _default_stack(monkeypatch)
    services = _services()
    internal = services["kafka"]["environment"]["KAFKA_ADVERTISED_LISTENERS"]
    for name, app in _apps().items():
        env = app["environment"]
        assert f"INTERNAL://{env['CHOREO_BOOTSTRAP_SERVERS']}" in internal, name
        assert env["CHOREO_SCHEMA_REGISTRY__URL"] == _in_compose(settings.schema_registry_url)
        assert app["depends_on"]["schema-registry"] == {"condition": "service_healthy"}
        assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == f"http://jaeger:{settings.otlp_http_port}"
        for dsn in (env["SHOP_DSN"], env["CATALOG_SYNC_DSN"]):
            url = urlsplit(dsn)
            assert (url.username, url.password, url.path) == (
                postgres.USER,
                postgres.PASSWORD,
                f"/{postgres.DATABASE}",
            )
            assert (url.hostname, url.port) == ("postgres", settings.postgres_port)
        assert str(env.get("CHOREO_INGRESS__SECRET", "${")).startswith("${"), "secret in file"
        assert set(app["depends_on"]) <= set(services)


def _in_compose(url: str) -> str:
    """A local-stack registry URL as the apps reach the registry's container (port 8080)."""
    parts = urlsplit(url)
    return parts._replace(netloc="schema-registry:8080").geturl()


def test_compose_registry_is_probed_on_the_local_probe_path_and_connect_has_its_converter(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = _default_stack(monkeypatch)
    services = _services()
    probe = services["schema-registry"]["healthcheck"]["test"]
    assert (
        _in_compose(settings.schema_registry_url).replace("schema-registry", "localhost")
        + "/subjects"
        in probe
    )
    assert services["schema-registry"]["environment"]["REGISTRY_RULES_GLOBAL_COMPATIBILITY"] == (
        registry.GLOBAL_COMPATIBILITY
    )
    assert services["connect"]["environment"]["ENABLE_APICURIO_CONVERTERS"] == "true"


def test_catalog_sync_starts_after_a_one_shot_prepared_its_tables_and_connector(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Otherwise compose's catalog-sync would consume a change topic no connector feeds."""
    connect_port = _default_stack(monkeypatch).connect_port
    services = _services()
    sync = services["catalog-sync"]
    [setup] = [
        name
        for name, wait in sync["depends_on"].items()
        if wait == {"condition": "service_completed_successfully"}
    ]
    one_shot = services[setup]
    assert one_shot["build"] == sync["build"] and one_shot["restart"] == "no"
    command = one_shot["command"]
    assert command[:3] == ["python", "-m", f"{sync['command'][2]}.demo"]
    assert "--prepare" in command
    connect_url = urlsplit(command[command.index("--connect") + 1])
    assert connect_url.hostname == "connect" and "connect" in one_shot["depends_on"]
    internal_ports = {int(m.split(":")[-1]) for m in services["connect"]["ports"]}
    assert internal_ports == {connect_url.port} == {connect_port}
    assert one_shot["depends_on"]["postgres"] == {"condition": "service_healthy"}


def _instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of a Dockerfile, continuation lines joined, comments left out."""
    lines = text.replace("\\\n", " ").splitlines()
    found = [line.strip().split(None, 1) for line in lines]
    return [(p[0].upper(), p[1] if len(p) > 1 else "") for p in found if p and p[0][0] != "#"]


def test_the_image_is_multi_stage_non_root_with_a_healthcheck_and_runs_a_service() -> None:
    steps = _instructions(DOCKERFILE.read_text())
    stages = [i for i, (op, _) in enumerate(steps) if op == "FROM"]
    assert len(stages) >= 2 and all("-slim" in steps[i][1] for i in stages)
    final = steps[stages[-1] :]
    [user] = [arg for op, arg in final if op == "USER"]
    assert user not in ("root", "0")
    [health] = [arg for op, arg in final if op == "HEALTHCHECK"]
    assert "CHOREO_HEALTH_URL" in health
    env = " ".join(arg for op, arg in final if op == "ENV")
    assert "CHOREO_HEALTH_URL=http://127.0.0.1:9464/readyz" in env
    assert all(app["environment"]["CHOREO_METRICS_PORT"] == "9464" for app in _apps().values())
    [command] = [json.loads(arg) for op, arg in final if op == "CMD"]
    assert command[:2] == ["choreo", "run"]
    assert (ROOT / (command[2].replace(".", "/") + ".py")).is_file()


def test_everything_the_image_copies_exists_and_is_not_docker_ignored() -> None:
    ignored = {
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    sources = [
        part
        for op, arg in _instructions(DOCKERFILE.read_text())
        if op == "COPY" and not arg.startswith("--from")
        for part in arg.split()[:-1]
    ]
    assert sources
    for source in sources:
        assert (ROOT / source).exists(), source
        assert source not in ignored, source
    assert {".git", ".venv", ".choreo", "tests"} <= ignored


# The three-node option: docker-compose.cluster.yml over the base file.

CLUSTER = ROOT / "docker-compose.cluster.yml"
_NODE_KEYS = {"KAFKA_NODE_ID", "KAFKA_LISTENERS", "KAFKA_ADVERTISED_LISTENERS"}


def test_compose_cluster_nodes_are_the_local_cluster_nodes(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Same ports, quorum and replication defaults as ``choreo dev up --brokers 3``; every
    other broker setting as the one-node service's."""
    monkeypatch.setenv("CHOREO_KAFKA_BROKERS", "3")
    nodes = _default_stack(monkeypatch).kafka_node_ports()
    overlay = yaml.safe_load(CLUSTER.read_text())["services"]
    base = _services()["kafka"]["environment"]
    envs = [{**base, **overlay["kafka"]["environment"]}]
    envs += [overlay[f"kafka-{n}"]["environment"] for n in (2, 3)]
    local = kafka.kafka_cluster(nodes)
    for n, (env, ports, node) in enumerate(zip(envs, nodes, local, strict=True), start=1):
        props = node._properties(tmp_path / "log", tmp_path / "tls")
        wanted = dict(line.split("=", 1) for line in props.splitlines() if "=" in line)
        for setting in (
            "default.replication.factor",
            "min.insync.replicas",
            "offsets.topic.replication.factor",
            "transaction.state.log.replication.factor",
            "transaction.state.log.min.isr",
        ):
            assert env["KAFKA_" + setting.upper().replace(".", "_")] == wanted[setting], setting
        voters = wanted["controller.quorum.voters"].split(",")
        assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"].split(",") == [
            f"{v.split('@')[0]}@{'kafka' if i == 0 else f'kafka-{i + 1}'}:9093"
            for i, v in enumerate(voters)
        ]
        assert env["KAFKA_NODE_ID"] == wanted["node.id"] == str(n)
        advertised = env["KAFKA_ADVERTISED_LISTENERS"]
        assert f"PLAINTEXT://127.0.0.1:{ports[0]}" in advertised
        assert f"SASL_SSL://127.0.0.1:{ports[2]}" in advertised
        same = {k: v for k, v in env.items() if k not in _NODE_KEYS}
        assert same == {k: v for k, v in envs[0].items() if k not in _NODE_KEYS}
    published = [_published(overlay[f"kafka-{n}"]) for n in (2, 3)]
    assert published == [{p[0], p[2]} for p in nodes[1:]]
    connect_env = overlay["connect"]["environment"]
    assert {connect_env[k] for k in connect_env if k.endswith("_REPLICATION_FACTOR")} == {"3"}
