"""Where the local stack listens and keeps its files, from ``CHOREO_*`` env vars.

The same object feeds ``choreo dev``, the pytest fixtures and the
docker-compose consistency test, so a port is defined in exactly one place.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from choreo._dev.component import StackPaths
from choreo._dev.registry import CCOMPAT_PATH

_BROKERS = "CHOREO_KAFKA_BROKERS"


def _port(name: str, default: int) -> int:
    return int(os.environ.get(f"CHOREO_{name}_PORT", default))


def _project_root() -> Path:
    """The nearest directory above the cwd holding ``pyproject.toml`` (else the cwd)."""
    here = Path.cwd().resolve()
    for candidate in (here, *here.parents):
        if (candidate / "pyproject.toml").exists():
            return candidate
    return here


@dataclass(frozen=True)
class StackSettings:
    """Ports of the local stack; each overridable by ``CHOREO_<NAME>_PORT``."""

    kafka_port: int = field(default_factory=lambda: _port("KAFKA", 9092))
    """Kafka's client listener (PLAINTEXT, loopback only)."""
    kafka_secure_port: int = field(default_factory=lambda: _port("KAFKA_SECURE", 9094))
    """Kafka's SASL_SSL listener (PLAIN, SCRAM, OAUTHBEARER over TLS; ACLs apply)."""
    kafka_controller_port: int = field(default_factory=lambda: _port("KAFKA_CONTROLLER", 9093))
    """Kafka's KRaft controller listener."""
    kafka_brokers: int = field(default_factory=lambda: int(os.environ.get(_BROKERS, 1)))
    """How many Kafka nodes: 1 (the default) or a replicated cluster (3, each broker and
    controller). Node ``n`` > 1 listens on ``CHOREO_KAFKA_<n>_PORT``, ``_CONTROLLER_PORT`` and
    ``_SECURE_PORT``, by default the first node's ports plus ``10 * (n - 1)``."""
    kafka_other_nodes: tuple[tuple[int, int, int], ...] | None = None
    """Explicit ports of nodes 2.. (tests use ``free_ports``); None: from the env."""
    postgres_port: int = field(default_factory=lambda: _port("POSTGRES", 5432))
    """PostgreSQL, with wal_level=logical for Debezium."""
    connect_port: int = field(default_factory=lambda: _port("CONNECT", 8083))
    """Kafka Connect's REST API."""
    registry_port: int = field(default_factory=lambda: _port("REGISTRY", 8085))
    """Apicurio Registry (in memory): the Confluent-compatible API and Apicurio's own."""
    jaeger_port: int = field(default_factory=lambda: _port("JAEGER", 16686))
    """Jaeger's query API and UI."""
    otlp_grpc_port: int = field(default_factory=lambda: _port("OTLP_GRPC", 4317))
    """Jaeger's OTLP gRPC receiver."""
    otlp_http_port: int = field(default_factory=lambda: _port("OTLP_HTTP", 4318))
    """Jaeger's OTLP HTTP receiver."""
    jaeger_grpc_port: int = field(default_factory=lambda: _port("JAEGER_GRPC", 16685))
    """Jaeger's query gRPC API."""

    def kafka_node_ports(self) -> list[tuple[int, int, int]]:
        """(client, controller, secure) ports of each Kafka node, the first node's first."""
        first = (self.kafka_port, self.kafka_controller_port, self.kafka_secure_port)
        if self.kafka_other_nodes is not None:
            return [first, *self.kafka_other_nodes][: self.kafka_brokers]
        nodes = [first]
        for n in range(2, self.kafka_brokers + 1):
            names = (f"KAFKA_{n}", f"KAFKA_{n}_CONTROLLER", f"KAFKA_{n}_SECURE")
            nodes.append(
                (
                    _port(names[0], first[0] + 10 * (n - 1)),
                    _port(names[1], first[1] + 10 * (n - 1)),
                    _port(names[2], first[2] + 10 * (n - 1)),
                )
            )
        return nodes

    @property
    def bootstrap_servers(self) -> str:
        """Every node's client listener: a client reaches the cluster with any one of them up."""
        return ",".join(f"127.0.0.1:{ports[0]}" for ports in self.kafka_node_ports())

    @property
    def secure_bootstrap_servers(self) -> str:
        return ",".join(f"127.0.0.1:{ports[2]}" for ports in self.kafka_node_ports())

    @property
    def postgres_dsn(self) -> str:
        return f"postgresql://choreo:choreo@127.0.0.1:{self.postgres_port}/choreo"

    @property
    def connect_url(self) -> str:
        return f"http://127.0.0.1:{self.connect_port}"

    @property
    def registry_url(self) -> str:
        """The registry's base URL (Apicurio's API, for its Connect converter, is under it)."""
        return f"http://127.0.0.1:{self.registry_port}"

    @property
    def schema_registry_url(self) -> str:
        """The Confluent-compatible API: ``[schema_registry] url`` of a service on this stack."""
        return self.registry_url + CCOMPAT_PATH

    @property
    def jaeger_query_url(self) -> str:
        return f"http://127.0.0.1:{self.jaeger_port}"

    @property
    def otlp_endpoint(self) -> str:
        return f"http://127.0.0.1:{self.otlp_http_port}"


def default_paths() -> StackPaths:
    """``.choreo/`` in the project for run-time data, ``~/.cache/choreo`` for downloads."""
    project = _project_root()
    cache_home = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return StackPaths(
        cache=Path(os.environ.get("CHOREO_CACHE_DIR", cache_home / "choreo")),
        state=Path(os.environ.get("CHOREO_STATE_DIR", project / ".choreo")),
        project=project,
    )
