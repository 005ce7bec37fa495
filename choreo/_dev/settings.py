"""Where the local stack listens and keeps its files, from ``CHOREO_*`` env vars.

The same object feeds ``choreo dev``, the pytest fixtures and the
docker-compose consistency test, so a port is defined in exactly one place.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from choreo._dev.component import StackPaths


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
    postgres_port: int = field(default_factory=lambda: _port("POSTGRES", 5432))
    """PostgreSQL, with wal_level=logical for Debezium."""
    connect_port: int = field(default_factory=lambda: _port("CONNECT", 8083))
    """Kafka Connect's REST API."""
    jaeger_port: int = field(default_factory=lambda: _port("JAEGER", 16686))
    """Jaeger's query API and UI."""
    otlp_grpc_port: int = field(default_factory=lambda: _port("OTLP_GRPC", 4317))
    """Jaeger's OTLP gRPC receiver."""
    otlp_http_port: int = field(default_factory=lambda: _port("OTLP_HTTP", 4318))
    """Jaeger's OTLP HTTP receiver."""
    jaeger_grpc_port: int = field(default_factory=lambda: _port("JAEGER_GRPC", 16685))
    """Jaeger's query gRPC API."""

    @property
    def bootstrap_servers(self) -> str:
        return f"127.0.0.1:{self.kafka_port}"

    @property
    def secure_bootstrap_servers(self) -> str:
        return f"127.0.0.1:{self.kafka_secure_port}"

    @property
    def postgres_dsn(self) -> str:
        return f"postgresql://choreo:choreo@127.0.0.1:{self.postgres_port}/choreo"

    @property
    def connect_url(self) -> str:
        return f"http://127.0.0.1:{self.connect_port}"

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
