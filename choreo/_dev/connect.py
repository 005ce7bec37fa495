"""A Kafka Connect distributed worker with the Debezium PostgreSQL connector, from Maven Central.

The worker runs on the Kafka jars (same version as the broker); Debezium sits
apart in ``plugin.path`` so Connect loads it in its own class loader, the way
Debezium's plugin archive is meant to be installed. That archive also holds
the outbox EventRouter SMT the CDC pipeline uses. Apicurio Registry's Avro
converter is a second plugin beside it, so a connector can write Avro in the
schema registry wire format (``CdcSource(avro_registry=...)``).
"""

from __future__ import annotations

import json
import os
import tempfile
import urllib.request
import zipfile
from pathlib import Path

from choreo._cdc.source import AVRO_CONVERTER
from choreo._dev.component import Launch, StackPaths
from choreo._dev.kafka import fetch_kafka_jars, java_argv
from choreo._dev.maven import fetch_jars
from choreo._dev.registry import APICURIO_VERSION

DEBEZIUM_VERSION = "3.7.0.Final"
"""Built against Kafka 4.3.1, the version choreo/_dev/kafka.py runs."""
WORKER_MAIN = "org.apache.kafka.connect.cli.ConnectDistributed"
POSTGRES_CONNECTOR = "io.debezium.connector.postgresql.PostgresConnector"
OUTBOX_EVENT_ROUTER = "io.debezium.transforms.outbox.EventRouter"
CONVERTER_PLUGIN = "apicurio-registry-converter"
_CONVERTER_SERVICE = "META-INF/services/org.apache.kafka.connect.storage.Converter"
_MANIFEST_JAR = "choreo-service-manifest.jar"
GROUP_ID = "choreo-connect"
TOPIC_PREFIX = "_choreo_connect"

_PROBE_TIMEOUT_S = 2.0


def plugin_path(paths: StackPaths) -> Path:
    """Holds ``debezium-connector-postgres/`` (one plugin)."""
    return paths.cache / f"debezium-{DEBEZIUM_VERSION}"


def converter_path(paths: StackPaths) -> Path:
    """Holds ``apicurio-registry-converter/``: the converter and its jars, Kafka's left out."""
    return paths.cache / f"apicurio-converter-{APICURIO_VERSION}"


def write_service_manifest(plugin: Path) -> None:
    """Add a jar that lists the Apicurio converter for Java's ServiceLoader.

    The worker finds plugins by their ServiceLoader manifests only
    (``plugin.discovery=service_load``, ~20 s faster to start than scanning
    every class), and Apicurio's jars ship none: without this, Connect would
    not know the converter class a connector names. Written once, atomically.
    """
    target = plugin / _MANIFEST_JAR
    if target.exists():
        return
    handle, name = tempfile.mkstemp(prefix=".manifest.", suffix=".tmp", dir=plugin)
    os.close(handle)
    try:
        with zipfile.ZipFile(name, "w") as jar:
            jar.writestr(_CONVERTER_SERVICE, AVRO_CONVERTER + "\n")
        Path(name).chmod(0o644)
        os.replace(name, target)
    finally:
        Path(name).unlink(missing_ok=True)


class Connect:
    """A one-worker Connect cluster on loopback, storing its state in Kafka topics."""

    name = "connect"
    install_lane = "maven"

    def __init__(self, port: int = 8083, kafka_port: int = 9092) -> None:
        self.port = port
        self.kafka_port = kafka_port
        self.ports = (port,)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def install(self, paths: StackPaths) -> None:
        fetch_kafka_jars(paths)
        fetch_jars(
            paths.project / "infra" / "connect" / "pom.xml",
            plugin_path(paths),
            {"debezium.version": DEBEZIUM_VERSION},
        )
        fetch_jars(
            paths.project / "infra" / "connect" / "apicurio-converter.pom.xml",
            converter_path(paths),
            {"apicurio.version": APICURIO_VERSION},
        )
        write_service_manifest(converter_path(paths) / CONVERTER_PLUGIN)

    def _config(self, paths: StackPaths) -> Path:
        return paths.data(self.name) / "connect-distributed.properties"

    def prepare(self, paths: StackPaths) -> None:
        """Write the worker config every time; its state lives in Kafka, not on disk."""
        paths.data(self.name).mkdir(parents=True, exist_ok=True)
        self._config(paths).write_text(self._properties(paths))

    def _properties(self, paths: StackPaths) -> str:
        settings = {
            "bootstrap.servers": f"127.0.0.1:{self.kafka_port}",
            "group.id": GROUP_ID,
            # Where the worker keeps connector configs, source offsets and task status.
            "config.storage.topic": f"{TOPIC_PREFIX}_configs",
            "offset.storage.topic": f"{TOPIC_PREFIX}_offsets",
            "status.storage.topic": f"{TOPIC_PREFIX}_status",
            # -1: the broker's default, 1 alone and 3 on a cluster (where min.insync.replicas=2
            # would refuse every write to a topic with one replica).
            "config.storage.replication.factor": "-1",
            "offset.storage.replication.factor": "-1",
            "status.storage.replication.factor": "-1",
            "offset.storage.partitions": "1",
            "status.storage.partitions": "1",
            # Plain JSON on the wire; a connector can override per instance.
            "key.converter": "org.apache.kafka.connect.json.JsonConverter",
            "value.converter": "org.apache.kafka.connect.json.JsonConverter",
            "key.converter.schemas.enable": "false",
            "value.converter.schemas.enable": "false",
            "plugin.path": f"{plugin_path(paths)},{converter_path(paths)}",
            # Kafka's and Debezium's jars all carry ServiceLoader manifests; the default
            # (hybrid_warn) also scans every class reflectively, ~20 s of startup.
            "plugin.discovery": "service_load",
            "listeners": self.url,
            "rest.advertised.host.name": "127.0.0.1",
            "rest.advertised.port": str(self.port),
            # Source offsets committed every second, so a restart replays little.
            "offset.flush.interval.ms": "1000",
        }
        lines = [f"{key}={value}" for key, value in settings.items()]
        return (
            "# Written by choreo/_dev/connect.py on every start; edits are lost.\n"
            + "\n".join(lines)
            + "\n"
        )

    def launch(self, paths: StackPaths) -> Launch:
        argv = java_argv(paths, WORKER_MAIN, str(self._config(paths)))
        return Launch(argv=argv, cwd=paths.data(self.name))

    def healthy(self) -> bool:
        """The REST API answers and the Debezium PostgreSQL connector is loaded."""
        try:
            plugins = self._get("/connector-plugins")
            self._get("/connectors")  # answered by the herder thread: the worker is running
        except (OSError, ValueError):
            return False
        return isinstance(plugins, list) and any(
            isinstance(p, dict) and p.get("class") == POSTGRES_CONNECTOR for p in plugins
        )

    def stale(self) -> str | None:
        """A worker started before the Apicurio converter was installed says how to restart it."""
        try:
            plugins = self._get("/connector-plugins?connectorsOnly=false")
        except (OSError, ValueError):
            return None
        if isinstance(plugins, list) and any(
            isinstance(p, dict) and p.get("class") == AVRO_CONVERTER for p in plugins
        ):
            return None
        return (
            f"no {AVRO_CONVERTER} plugin (this worker was started with an older config); "
            "restart it to get one: choreo dev down connect && choreo dev up"
        )

    def _get(self, path: str) -> object:
        """GET a REST path and decode its JSON; non-2xx raises (HTTPError is an OSError)."""
        with urllib.request.urlopen(self.url + path, timeout=_PROBE_TIMEOUT_S) as response:
            return json.loads(response.read())

    def after_start(self, paths: StackPaths) -> None:
        """Nothing to do: connectors are registered by the code that owns them."""
