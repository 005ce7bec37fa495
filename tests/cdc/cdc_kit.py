"""Helpers of the CDC tests: unique tables and connectors, a service runner, waiting.

Every connector applied through a ``CdcKit`` is deleted and its replication
slot dropped by ``cleanup`` (the ``cdc`` fixture calls it even when the test
failed), so a failed run never leaves a slot holding WAL on the shared
PostgreSQL.
"""

from __future__ import annotations

import asyncio
import functools
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import psycopg

from choreo._config import KafkaConfig, SchemaRegistryConfig, ServiceConfig
from choreo._runtime.runner import ServiceRunner
from choreo._schemas import Catalog, TopicSpec
from choreo._service import Service
from choreo._transport.base import Record, TopicConfig, TopicPartition, Transport
from choreo._transport.registry import make_transport
from choreo.cdc import ConnectClient, Postgres, PostgresConnector, drop_slot

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"


class CdcKit:
    """What a CDC test needs: the database, Connect, names, and a service runner."""

    def __init__(self, kafka: str, dsn: str, connect_url: str) -> None:
        self.kafka = kafka
        self.dsn = dsn
        self.database = Postgres.from_dsn(dsn)
        self.connect = ConnectClient(connect_url)
        self.connectors: list[PostgresConnector] = []
        self.tables: list[str] = []

    @staticmethod
    def name(prefix: str) -> str:
        """Lower case with '_': valid as a table, slot, publication, connector and topic name."""
        return f"{prefix}_{uuid.uuid4().hex[:10]}"

    def sql(self, *statements: str) -> None:
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            for statement in statements:
                conn.execute(statement)

    def table(self, ddl_columns: str, prefix: str = "t") -> str:
        """Create a table with ``REPLICA IDENTITY FULL`` (``before`` on updates and deletes)."""
        name = self.name(prefix)
        self.tables.append(name)
        self.sql(
            f"CREATE TABLE {name} ({ddl_columns})",
            f"ALTER TABLE {name} REPLICA IDENTITY FULL",
        )
        return f"public.{name}"

    def apply(self, connector: PostgresConnector, timeout_s: float = 60.0) -> None:
        self.connectors.append(connector)
        self.connect.apply(connector.name, connector.connector_config())
        self.connect.wait_running(connector.name, timeout_s)

    def catalog(self, partitions: int = 3) -> tuple[Catalog, str]:
        """The shop catalog with ``shop.orders``' events on a topic of this test's own."""
        shop = Catalog.load(SCHEMAS)
        orders = shop.topic_of("shop.orders.OrderPlaced")
        topic = self.name("orders")
        spec = TopicSpec(topic, orders.events, orders.key, partitions)
        versions = {t: shop.versions(t) for t in shop.event_types}
        return Catalog(versions, {topic: spec}, None), topic

    @asynccontextmanager
    async def running(
        self, service: Service, catalog: Catalog, *, registry: str | None = None
    ) -> AsyncIterator[ServiceRunner]:
        """The service consuming on the confluent transport until the block ends.

        Topic-handler topics (change topics) are created first: the runner
        only creates catalog topics, and a consumer subscribed to a missing
        topic may not notice it appear for minutes. ``registry``: the
        service's ``[schema_registry] url``.
        """
        settings: dict[str, object] = {}
        if registry is not None:
            settings["schema_registry"] = SchemaRegistryConfig(url=registry)
        config = ServiceConfig(
            kafka=KafkaConfig(bootstrap_servers=self.kafka),
            commit_interval_s=0.2,
            shutdown_grace_s=5.0,
            **settings,  # type: ignore[arg-type]
        )
        transport = make_transport("confluent", config.kafka)
        change_topics = [h.topic for h in service.handlers if h.topic is not None]
        await transport.ensure_topics([TopicConfig(t) for t in change_topics])
        runner = ServiceRunner(service, config, transport, catalog)
        await runner.start()
        stop = asyncio.Event()
        task = asyncio.create_task(runner.run(stop))
        try:
            yield runner
        finally:
            stop.set()
            await task

    def cleanup(self) -> None:
        """Delete connectors, drop their slots, drop tables: each tried even if one fails."""
        steps: list[Callable[[], object]] = []
        for connector in self.connectors:
            steps.append(functools.partial(self.connect.delete, connector.name, missing_ok=True))
            steps.append(functools.partial(drop_slot, connector))
        if self.tables:
            steps.append(lambda: self.sql(f"DROP TABLE IF EXISTS {', '.join(self.tables)}"))
        failures = []
        for step in steps:
            try:
                step()
            except Exception as error:
                failures.append(error)
        if failures:
            raise failures[0]


async def eventually(check: Callable[[], bool], timeout_s: float, what: str) -> float:
    """Wait until ``check()`` holds; returns the seconds it took (fails naming ``what``)."""
    began = time.monotonic()
    while not check():
        if time.monotonic() - began > timeout_s:
            raise AssertionError(f"{what}: not true after {timeout_s:.0f}s")
        await asyncio.sleep(0.02)
    return time.monotonic() - began


class _Listener:
    async def on_assigned(self, partitions: list[TopicPartition]) -> None:
        return None

    async def on_revoked(self, partitions: list[TopicPartition]) -> None:
        return None


async def read_topic(
    transport: Transport, topic: str, count: int, timeout_s: float = 30.0
) -> list[Record]:
    """The first ``count`` records of ``topic``, read by a throwaway consumer group."""
    consumer = transport.consumer(f"reader-{uuid.uuid4().hex[:8]}", "cdc-test-reader")
    await consumer.subscribe([topic], _Listener())
    records: list[Record] = []
    deadline = time.monotonic() + timeout_s
    try:
        while len(records) < count and time.monotonic() < deadline:
            records += await consumer.poll(100, 0.2)
    finally:
        await consumer.close()
    assert len(records) == count, f"{topic}: {len(records)} records, {count} expected"
    return records
