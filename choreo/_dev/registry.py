"""Apicurio Registry (in-memory storage) as a local-stack component, from Maven Central.

The app's ``all`` archive is a ready Quarkus application run with ``java -jar``:
no Docker, and the same download path as Kafka and Debezium. 2.6.x is the
newest line that runs on Java 17 (3.x needs Java 21). Clients talk to its
Confluent-compatible API (``/apis/ccompat/v7``); Debezium's Apicurio converter
talks to its own (``choreo._cdc.source.APICURIO_API``).
"""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

from choreo._dev.component import ComponentError, Launch, StackPaths
from choreo._dev.maven import fetch_jars, require_tool

APICURIO_VERSION = "2.6.13.Final"
"""Also the version of the Kafka Connect converter (choreo/_dev/connect.py)."""
CCOMPAT_PATH = "/apis/ccompat/v7"
"""The Confluent Schema Registry API: what confluent-kafka's client and choreo speak."""
GLOBAL_COMPATIBILITY = "BACKWARD"
"""Confluent's default. Apicurio's is NONE, and its start-up property for it does not
take, so ``after_start`` sets it through the API (storage is in memory: every start)."""
HEAP = ["-Xmx256m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1"]
"""About 250-320 MB resident with this: plenty for a dev registry of a few hundred schemas."""

_PROBE_TIMEOUT_S = 2.0


def install_dir(paths: StackPaths) -> Path:
    return paths.cache / f"apicurio-registry-{APICURIO_VERSION}"


class Registry:
    """A schema registry on loopback; its subjects and ids last as long as the process."""

    name = "registry"
    install_lane = "maven"

    def __init__(self, port: int = 8085) -> None:
        self.port = port
        self.ports = (port,)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ccompat_url(self) -> str:
        return self.url + CCOMPAT_PATH

    def install(self, paths: StackPaths) -> None:
        fetch_jars(
            paths.project / "infra" / "registry" / "pom.xml",
            install_dir(paths),
            {"apicurio.version": APICURIO_VERSION},
        )

    def prepare(self, paths: StackPaths) -> None:
        """Nothing to initialise: storage is in memory."""

    def launch(self, paths: StackPaths) -> Launch:
        jar = install_dir(paths) / f"apicurio-registry-app-{APICURIO_VERSION}-runner.jar"
        if not jar.is_file():
            raise ComponentError(f"no runner jar at {jar}; remove {install_dir(paths)} to refetch")
        tmp = paths.data(self.name) / "tmp"
        tmp.mkdir(parents=True, exist_ok=True)
        argv = [
            require_tool("java"),
            *HEAP,
            # Vert.x's file cache goes here, not /tmp: it stays with the stack's other files
            # and goes with its state dir.
            f"-Djava.io.tmpdir={tmp}",
            "-Dquarkus.http.host=127.0.0.1",
            f"-Dquarkus.http.port={self.port}",
            "-jar",
            str(jar),
        ]
        return Launch(argv=argv, cwd=paths.data(self.name))

    def healthy(self) -> bool:
        """The Confluent-compatible API lists subjects (200 with a JSON list)."""
        try:
            with urllib.request.urlopen(
                self.ccompat_url + "/subjects", timeout=_PROBE_TIMEOUT_S
            ) as response:
                return isinstance(json.loads(response.read()), list)
        except (OSError, ValueError):
            return False

    def after_start(self, paths: StackPaths) -> None:
        """Set the global compatibility to Confluent's default, and check that it took."""
        body = json.dumps({"compatibility": GLOBAL_COMPATIBILITY}).encode()
        request = urllib.request.Request(
            self.ccompat_url + "/config",
            data=body,
            method="PUT",
            headers={"Content-Type": "application/vnd.schemaregistry.v1+json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=_PROBE_TIMEOUT_S * 5):
                pass
            now = self.global_compatibility()
        except (OSError, ValueError) as error:
            raise ComponentError(
                f"setting the global compatibility at {self.ccompat_url}/config failed: {error}"
            ) from error
        if now != GLOBAL_COMPATIBILITY:
            raise ComponentError(
                f"the global compatibility at {self.ccompat_url}/config is {now}, "
                f"not {GLOBAL_COMPATIBILITY}, after setting it"
            )

    def global_compatibility(self) -> str | None:
        """What the registry applies to a subject with no level of its own."""
        with urllib.request.urlopen(self.ccompat_url + "/config", timeout=_PROBE_TIMEOUT_S) as r:
            level = json.loads(r.read()).get("compatibilityLevel")
        return level if isinstance(level, str) else None
