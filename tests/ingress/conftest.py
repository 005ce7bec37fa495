"""``choreo ingress`` as a user runs it: a subprocess on a port the kernel picks."""

from __future__ import annotations

import http.client
import json
import os
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from choreo import KafkaConfig
from choreo._dlq.reader import DeadLetter, read
from choreo._schemas import Catalog
from choreo._transport.confluent import librdkafka_settings
from choreo.ingress import sign

ROOT = Path(__file__).resolve().parents[2]
SECRET = "ingress-test-secret"
MAX_BODY_BYTES = 4096
ROUTE = "POST /orders=shop.orders.OrderReceived"


def signed(
    body: bytes,
    target: str = "/orders",
    *,
    method: str = "POST",
    secret: str = SECRET,
    timestamp: int | None = None,
) -> dict[str, str]:
    """The signature headers of ``method target`` with ``body``, as a sender makes them."""
    return sign(secret, body, method=method, target=target, timestamp=timestamp)


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: dict[str, Any]


@dataclass
class Ingress:
    url: str
    process: subprocess.Popen[str]
    log: Path
    """Its stderr (log lines)."""

    def connect(self) -> socket.socket:
        """A raw connection, for requests ``http.client`` will not send."""
        host, port = self.url.removeprefix("http://").split(":")
        return socket.create_connection((host, int(port)), timeout=60)

    def request(
        self, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None
    ) -> Reply:
        host, port = self.url.removeprefix("http://").split(":")
        connection = http.client.HTTPConnection(host, int(port), timeout=60)
        try:
            connection.request(
                method, path, body, {"Content-Type": "application/json", **(headers or {})}
            )
            response = connection.getresponse()
            payload = response.read()
            payload_type = (response.getheader("content-type") or "").encode()
        finally:
            connection.close()
        return Reply(
            response.status,
            {k.lower(): v for k, v in response.getheaders()},
            json.loads(payload) if b"json" in payload_type else {"text": payload.decode()},
        )


StartIngress = Callable[..., Ingress]
Published = Callable[[str], list[DeadLetter]]


@pytest.fixture(scope="module")
def published(kafka: str, module_schemas: Path) -> Published:
    """Every record on the orders topic now whose key is ``order_id``."""
    topic = next(
        name for name in Catalog.load(module_schemas).topics if name.startswith("shop.orders")
    )
    settings = librdkafka_settings(KafkaConfig(bootstrap_servers=kafka))

    def records(order_id: str) -> list[DeadLetter]:
        return [r for r in read(settings, topic) if r.key == order_id.encode()]

    return records


@pytest.fixture(scope="module")
def start_ingress(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[StartIngress]:
    """Start ``choreo ingress`` with the given env; each is stopped (SIGTERM) after the module."""
    started: list[subprocess.Popen[str]] = []
    logs = tmp_path_factory.mktemp("ingress")

    def start(bootstrap: str, schemas: Path, **env: str) -> Ingress:
        log = logs / f"ingress-{len(started)}.log"
        process = subprocess.Popen(
            [sys.executable, "-m", "choreo._cli.main", "ingress", "--route", ROUTE, "--port", "0"],
            cwd=ROOT,
            env={
                **os.environ,
                "CHOREO_BOOTSTRAP_SERVERS": bootstrap,
                "CHOREO_SCHEMAS_DIR": str(schemas),
                "CHOREO_INGRESS__SECRET": SECRET,
                "CHOREO_INGRESS__MODELS": "services.events",
                "CHOREO_INGRESS__MAX_BODY_BYTES": str(MAX_BODY_BYTES),
                **env,
            },
            stdout=subprocess.PIPE,
            stderr=log.open("w"),
            text=True,
        )
        started.append(process)
        assert process.stdout is not None
        for line in process.stdout:
            if line.startswith("choreo ingress listening on "):
                return Ingress(line.split()[-1], process, log)
        raise AssertionError(f"ingress exited ({process.wait()}): {log.read_text()}")

    yield start
    for process in started:
        process.terminate()
        process.wait(timeout=30)
