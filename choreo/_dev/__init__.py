"""The local development stack: Kafka, PostgreSQL, Kafka Connect, a schema registry and Jaeger
as processes."""

from __future__ import annotations

from choreo._dev.component import ComponentError, StackPaths
from choreo._dev.connect import Connect
from choreo._dev.jaeger import Jaeger
from choreo._dev.kafka import Kafka, kafka_cluster
from choreo._dev.postgres import Postgres
from choreo._dev.registry import Registry
from choreo._dev.settings import StackSettings, default_paths
from choreo._dev.stack import Stack


def local_stack(settings: StackSettings | None = None, paths: StackPaths | None = None) -> Stack:
    """The whole stack in start order: Connect needs Kafka; nothing needs the registry or
    Jaeger to start (a connector writing Avro needs the registry once it runs)."""
    s = settings or StackSettings()
    return Stack(
        paths or default_paths(),
        [
            Postgres(port=s.postgres_port),
            *kafka_nodes(s),
            Connect(port=s.connect_port, kafka_port=s.kafka_port),
            Registry(port=s.registry_port),
            Jaeger(
                port=s.jaeger_port,
                otlp_grpc_port=s.otlp_grpc_port,
                otlp_http_port=s.otlp_http_port,
                query_grpc_port=s.jaeger_grpc_port,
            ),
        ],
    )


def kafka_nodes(settings: StackSettings) -> list[Kafka]:
    """The one broker, or a cluster's nodes when ``kafka_brokers`` asks for more."""
    if settings.kafka_brokers == 1:
        return [Kafka(*settings.kafka_node_ports()[0])]
    return kafka_cluster(settings.kafka_node_ports())


def kafka_cluster_stack(settings: StackSettings, paths: StackPaths) -> Stack:
    """Only the Kafka nodes: a cluster a test may kill brokers of without touching the rest."""
    return Stack(paths, kafka_nodes(settings))


__all__ = [
    "ComponentError",
    "Stack",
    "StackSettings",
    "default_paths",
    "kafka_cluster_stack",
    "kafka_nodes",
    "local_stack",
]
