"""pytest fixtures for the real stack, usable in any project that installs choreo.

``kafka``, ``postgres``, ``connect`` and ``jaeger`` are session-scoped: the
local stack is started (or reused) once. Where a Docker engine answers and
``CHOREO_STACK=docker``, Kafka and PostgreSQL come from testcontainers
instead. ``unique_name`` gives each test its own topic/group names so tests
never see each other's records.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest

from choreo._dev.settings import StackSettings


@dataclass(frozen=True)
class JaegerEndpoints:
    otlp_http: str
    """OTLP/HTTP base URL (OTEL_EXPORTER_OTLP_ENDPOINT)."""
    otlp_grpc: str
    """OTLP/gRPC endpoint."""
    query: str
    """Query API base URL (``/api/traces``)."""


def _use_docker() -> bool:
    return os.environ.get("CHOREO_STACK") == "docker"


@pytest.fixture(scope="session")
def choreo_stack() -> StackSettings:
    """The local stack, brought up (or reused) once per session."""
    from choreo._dev import local_stack

    settings = StackSettings()
    if not _use_docker():
        local_stack(settings).up()
    return settings


@pytest.fixture(scope="session")
def kafka(choreo_stack: StackSettings) -> Iterator[str]:
    """Bootstrap servers of a real Kafka broker."""
    if _use_docker():
        from testcontainers.kafka import KafkaContainer

        with KafkaContainer("apache/kafka:4.1.1").with_kraft() as container:
            yield container.get_bootstrap_server()
        return
    yield choreo_stack.bootstrap_servers


@pytest.fixture(scope="session")
def postgres(choreo_stack: StackSettings) -> Iterator[str]:
    """DSN of a PostgreSQL with wal_level=logical and a replication-capable user."""
    if _use_docker():
        from testcontainers.postgres import PostgresContainer

        container = PostgresContainer(
            "postgres:17", username="choreo", password="choreo", dbname="choreo"
        )
        container.with_command("postgres -c wal_level=logical")
        with container:
            yield container.get_connection_url(driver=None)
        return
    yield choreo_stack.postgres_dsn


@pytest.fixture(scope="session")
def connect(choreo_stack: StackSettings) -> str:
    """Kafka Connect's REST URL (with the Debezium PostgreSQL connector installed)."""
    return choreo_stack.connect_url


@pytest.fixture(scope="session")
def jaeger(choreo_stack: StackSettings) -> JaegerEndpoints:
    """Where to export spans and where to read traces back."""
    return JaegerEndpoints(
        otlp_http=choreo_stack.otlp_endpoint,
        otlp_grpc=f"http://127.0.0.1:{choreo_stack.otlp_grpc_port}",
        query=choreo_stack.jaeger_query_url,
    )


@pytest.fixture
def unique_name(request: pytest.FixtureRequest) -> Callable[[str], str]:
    """``unique_name("orders")`` → ``orders-test_x-1a2b3c4d``: per-test topic and group names."""
    test = request.node.name.replace("[", "-").replace("]", "")[:40]

    def make(prefix: str) -> str:
        return f"{prefix}-{test}-{uuid.uuid4().hex[:8]}"

    return make
