"""A secured world on the local broker's SASL_SSL listener: per-test SCRAM users named after
per-test services, topics renamed per test, and ``choreo`` run as subprocesses the way an
operator runs it (admin for ``choreo acl``, each service as its own principal)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from choreo._config import KafkaConfig
from choreo.pytest_plugin import SecureKafka

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent


def kafka_env(config: KafkaConfig) -> dict[str, str]:
    """``config`` as the ``CHOREO_KAFKA__*`` variables ``choreo`` reads."""
    env = {"CHOREO_BOOTSTRAP_SERVERS": config.bootstrap_servers}
    for name, value in config.model_dump(exclude_defaults=True).items():
        if name != "client_options":
            secret = getattr(value, "get_secret_value", None)
            env[f"CHOREO_KAFKA__{name.upper()}"] = str(secret() if secret else value)
    return env


class Secured:
    """One test's principals, schemas and processes."""

    def __init__(self, secure: SecureKafka, schemas: Path, tmp: Path) -> None:
        self.secure = secure
        self.schemas = schemas
        self.tmp = tmp
        self.prefix = f"t{uuid.uuid4().hex[:8]}-"
        self.saga = f"sec-{uuid.uuid4().hex[:8]}"
        self.passwords: dict[str, str] = {}
        self.processes: list[tuple[subprocess.Popen[str], Path]] = []
        self.base_env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(ROOT), str(HERE), str(ROOT / "tests" / "saga")]),
            "CHOREO_SCHEMAS_DIR": str(schemas),
            "CHOREO_TEST_PREFIX": self.prefix,
            "CHOREO_TEST_SAGA_NAME": self.saga,
            "CHOREO_TEST_SAGA_SLOW": "1",  # deadlines never race the services' start-up
            "CHOREO_CREATE_TOPICS": "false",  # `choreo acl apply` made them, as the admin
        }

    def user(self, name: str) -> str:
        """A SCRAM user for ``name`` (prefixed), with a fresh password; returns the user name."""
        user = name if name.startswith("choreo-saga-") else f"{self.prefix}{name}"
        self.passwords[user] = f"pw-{uuid.uuid4().hex}"
        self.secure.add_user(user, self.passwords[user])
        return user

    def as_user(self, user: str, **settings: object) -> dict[str, str]:
        return kafka_env(self.secure.config(user, self.passwords[user], **settings))

    def choreo(self, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "choreo._cli.main", *args],
            cwd=ROOT,
            env={**self.base_env, **env},
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    def admin(self, *args: str) -> subprocess.CompletedProcess[str]:
        return self.choreo(*args, env=kafka_env(self.secure.admin()))

    def start(self, *args: str, env: dict[str, str]) -> subprocess.Popen[str]:
        log = self.tmp / f"process-{len(self.processes)}.log"
        process = subprocess.Popen(
            [sys.executable, "-m", "choreo._cli.main", *args],
            cwd=ROOT,
            env={**self.base_env, **env},
            stdout=log.open("w"),
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.processes.append((process, log))
        return process

    def output(self, process: subprocess.Popen[str]) -> str:
        return next(log.read_text() for p, log in self.processes if p is process)

    def wait(self, check: Callable[[], bool], what: str, timeout_s: float = 60) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if check():
                return
            time.sleep(0.25)
        logs = "\n".join(f"--- {log.name}\n{log.read_text()[-3000:]}" for _, log in self.processes)
        raise AssertionError(f"timed out waiting for {what}\n{logs}")

    def stop(self) -> None:
        for process, _ in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process, _ in self.processes:
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@pytest.fixture
def secured(kafka_secure: SecureKafka, isolated_schemas: Path, tmp_path: Path) -> Iterator[Secured]:
    world = Secured(kafka_secure, isolated_schemas, tmp_path)
    try:
        yield world
    finally:
        world.stop()
