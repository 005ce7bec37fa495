"""pytest fixtures for the real stack, usable in any project that installs choreo.

``kafka``, ``postgres``, ``connect``, ``schema_registry`` and ``jaeger`` are
session-scoped: the local stack is started (or reused) once. ``kafka_secure`` is the same broker's
SASL_SSL listener (ACLs apply there), with its CA and a way to add SCRAM users.
Where a Docker engine answers and ``CHOREO_STACK=docker``, Kafka and
PostgreSQL come from testcontainers instead. ``unique_name`` gives each test
its own topic/group names so tests never see each other's records.
``kafka_cluster`` is a separate 3-node cluster, started only when a test asks.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from choreo._config import KafkaConfig
from choreo._dev.component import StackPaths
from choreo._dev.ports import free_ports
from choreo._dev.settings import StackSettings
from choreo._dev.stack import Stack


@dataclass(frozen=True)
class JaegerEndpoints:
    otlp_http: str
    """OTLP/HTTP base URL (OTEL_EXPORTER_OTLP_ENDPOINT)."""
    otlp_grpc: str
    """OTLP/gRPC endpoint."""
    query: str
    """Query API base URL (``/api/traces``)."""


@dataclass(frozen=True)
class SecureKafka:
    """The local broker's SASL_SSL listener: where it is, what signed it, who administers it."""

    bootstrap_servers: str
    tls_dir: Path
    """The local CA (``ca.pem``, ``ca.key``); ``choreo._dev.tls.issue`` makes client certs."""
    admin_user: str
    admin_password: str

    @property
    def ca_file(self) -> Path:
        return self.tls_dir / "ca.pem"

    def config(self, user: str, password: str, **settings: object) -> KafkaConfig:
        """SCRAM-SHA-512 over TLS as ``user`` (``settings`` override any field)."""
        values: dict[str, object] = {
            "bootstrap_servers": self.bootstrap_servers,
            "security_protocol": "SASL_SSL",
            "sasl_mechanism": "SCRAM-SHA-512",
            "sasl_username": user,
            "sasl_password": password,
            "ssl_cafile": self.ca_file,
        }
        return KafkaConfig.model_validate(values | settings)

    def admin(self) -> KafkaConfig:
        """The super user's settings (ACLs do not restrict it)."""
        return self.config(self.admin_user, self.admin_password)

    def add_user(self, user: str, password: str) -> None:
        """Create (or reset) a SCRAM-SHA-256 and -512 user through the Admin API."""
        from confluent_kafka.admin import (  # type: ignore[attr-defined]
            AdminClient,
            ScramCredentialInfo,
            ScramMechanism,
            UserScramCredentialUpsertion,
        )

        from choreo._transport.confluent import librdkafka_settings

        admin = AdminClient(librdkafka_settings(self.admin()))
        upserts = [
            UserScramCredentialUpsertion(
                user, ScramCredentialInfo(mechanism, 4096), password.encode()
            )
            for mechanism in (ScramMechanism.SCRAM_SHA_256, ScramMechanism.SCRAM_SHA_512)
        ]
        for upsert in upserts:  # one change per user per request
            for future in admin.alter_user_scram_credentials([upsert]).values():
                future.result(30)


@dataclass(frozen=True)
class KafkaCluster:
    """A 3-node KRaft cluster of its own (own ports and state dir): tests may kill its nodes.

    Replication factor 3 and ``min.insync.replicas=2`` by default. Node names
    are ``kafka-1`` .. ``kafka-3``; ``node_ids`` maps them to broker ids.
    """

    stack: Stack
    settings: StackSettings

    @property
    def bootstrap_servers(self) -> str:
        return self.settings.bootstrap_servers

    @property
    def node_ids(self) -> dict[str, int]:
        return {c.name: i for i, c in enumerate(self.stack.components, start=1)}

    def kill(self, node: str) -> None:
        """SIGKILL one node (no controlled shutdown)."""
        self.stack.kill(node)

    def stop(self, node: str) -> None:
        """Stop one node gracefully (controlled shutdown moves its leaders away first)."""
        self.stack.down([node])

    def start(self, *nodes: str) -> None:
        """Start the named nodes (default: whichever are down) and wait until each answers."""
        chosen = [c for c in self.stack.components if not nodes or c.name in nodes]
        Stack(self.stack.paths, chosen).up()


@pytest.fixture(scope="session")
def kafka_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaCluster]:
    """Three Kafka nodes started (in parallel) for the session's tests that ask for them.

    Not the shared stack: its own state dir and ports (``free_ports``), so
    killing its brokers disturbs nobody. Killed at the end of the session.
    """
    from choreo._dev import default_paths, kafka_cluster_stack

    if _use_docker():
        pytest.skip("kafka_cluster runs its own local nodes (CHOREO_STACK is docker)")
    ports = free_ports(9)
    nodes = [(ports[i], ports[i + 1], ports[i + 2]) for i in range(0, 9, 3)]
    settings = StackSettings(
        kafka_port=nodes[0][0],
        kafka_controller_port=nodes[0][1],
        kafka_secure_port=nodes[0][2],
        kafka_brokers=3,
        kafka_other_nodes=tuple(nodes[1:]),
    )
    shared = default_paths()
    paths = StackPaths(shared.cache, tmp_path_factory.mktemp("kafka-cluster"), shared.project)
    stack = kafka_cluster_stack(settings, paths)
    try:
        stack.up()
        yield KafkaCluster(stack, settings)
    finally:
        for component in stack.components:
            stack.kill(component.name)


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
def kafka_secure(choreo_stack: StackSettings) -> SecureKafka:
    """The SASL_SSL listener of the local broker (PLAIN, SCRAM, OAUTHBEARER; ACLs on).

    A broker started before the listener existed fails the test with the
    restart command rather than timing out.
    """
    from choreo._dev import default_paths
    from choreo._dev.kafka import ADMIN_PASSWORD, ADMIN_USER, Kafka, tls_dir

    if _use_docker():
        pytest.skip("kafka_secure needs the local stack's broker (CHOREO_STACK is docker)")
    broker = Kafka(
        port=choreo_stack.kafka_port,
        controller_port=choreo_stack.kafka_controller_port,
        secure_port=choreo_stack.kafka_secure_port,
    )
    stale = broker.stale()
    if stale is not None:
        pytest.fail(f"kafka: {stale}")
    return SecureKafka(
        choreo_stack.secure_bootstrap_servers, tls_dir(default_paths()), ADMIN_USER, ADMIN_PASSWORD
    )


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
def schema_registry(choreo_stack: StackSettings) -> str:
    """The Confluent-compatible API of the stack's Apicurio Registry (in memory, BACKWARD by
    default): a service's ``[schema_registry] url``, ``SchemaRegistryClient``'s ``url``."""
    if _use_docker():
        pytest.skip("schema_registry needs the local stack's registry (CHOREO_STACK is docker)")
    return choreo_stack.schema_registry_url


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
