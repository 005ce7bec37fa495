"""``choreo dev`` as a user runs it, on a second stack with its own ports and state dir."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from choreo._dev.component import StackPaths
from choreo._dev.kafka import Kafka
from choreo._dev.ports import free_ports
from choreo._dev.postgres import Postgres

pytestmark = pytest.mark.stack

NAMES = (
    "KAFKA",
    "KAFKA_CONTROLLER",
    "KAFKA_SECURE",
    "POSTGRES",
    "CONNECT",
    "REGISTRY",
    "JAEGER",
    "OTLP_GRPC",
    "OTLP_HTTP",
    "JAEGER_GRPC",
)


@dataclass(frozen=True)
class Dev:
    """``choreo dev`` on its own state dir and ports."""

    state: Path
    ports: dict[str, int]

    def run(self, *args: str, path: str | None = None) -> subprocess.CompletedProcess[str]:
        env = dict(os.environ, CHOREO_STATE_DIR=str(self.state))
        env.update({f"CHOREO_{name}_PORT": str(port) for name, port in self.ports.items()})
        if path is not None:
            env["PATH"] = path
        return subprocess.run(
            [sys.executable, "-m", "choreo._cli.main", "dev", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=900,
        )


def _our_processes(state: Path) -> list[int]:
    """Pids whose command line names the state dir or PostgreSQL's data dir (every component's)."""
    paths = StackPaths(cache=Path(), state=state, project=Path())
    marks = [str(state).encode(), str(Postgres().data_dir(paths)).encode()]
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ")
            except OSError:
                continue
            if any(mark in cmdline for mark in marks) and b"choreo._cli.main" not in cmdline:
                found.append(int(entry.name))
    return found


def _in_groups(pids: list[str]) -> list[int]:
    """Processes left in the process groups of the recorded pids (children included)."""
    left = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if fields[2] in pids and fields[0] != "Z":  # a zombie is not running
                left.append(int(entry.name))
    return left


def _pids(state: Path) -> dict[str, str]:
    return {p.stem: p.read_text().split()[0] for p in (state / "run").glob("*.pid")}


@pytest.fixture
def dev(tmp_path: Path) -> Iterator[Dev]:
    """Ports chosen as the test starts: chosen at import, they sat unbound through the
    whole suite, and one was taken by the time this module ran (CI, 2026-12-05)."""
    dev = Dev(tmp_path / "state", dict(zip(NAMES, free_ports(len(NAMES)), strict=True)))
    yield dev
    dev.run("down")
    # Run as root, PostgreSQL's data lives outside the state dir (in /var/tmp): 46 MB a run.
    data = Postgres().data_dir(StackPaths(cache=Path(), state=dev.state, project=Path()))
    if not data.is_relative_to(dev.state):
        shutil.rmtree(data.parent, ignore_errors=True)


def test_up_twice_reuses_everything_and_down_leaves_no_process(dev: Dev) -> None:
    first = dev.run("up")
    assert first.returncode == 0, first.stdout + first.stderr
    pids = _pids(dev.state)
    assert sorted(pids) == ["connect", "jaeger", "kafka", "postgres", "registry"]

    second = dev.run("up")
    assert second.returncode == 0, second.stdout + second.stderr
    assert second.stdout.count("already running") == 5
    assert "started" not in second.stdout
    assert _pids(dev.state) == pids

    status = dev.run("status")
    assert status.returncode == 0
    for name, pid in pids.items():
        assert any(
            line.split()[:3] == [name, str(dev.ports[name.upper()]), pid]
            for line in status.stdout.splitlines()
        ), status.stdout
    assert "no SASL_SSL listener" not in status.stdout
    assert "AvroConverter plugin" not in status.stdout  # Connect found the Apicurio converter
    assert Kafka(port=dev.ports["KAFKA"], secure_port=dev.ports["KAFKA_SECURE"]).stale() is None
    older = Kafka(port=dev.ports["KAFKA"], secure_port=free_ports(1)[0])  # as if started without it
    assert "choreo dev down kafka && choreo dev up" in (older.stale() or "")

    down = dev.run("down")
    assert down.returncode == 0, down.stderr
    assert _in_groups(list(pids.values())) == []
    assert _our_processes(dev.state) == []
    assert _pids(dev.state) == {}


def test_a_taken_port_names_the_component_and_leaves_nothing_running(dev: Dev) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", dev.ports["KAFKA"]))
        squatter.listen()
        result = dev.run("up")
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"kafka: port {dev.ports['KAFKA']} is taken" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert _our_processes(dev.state) == []


def test_a_missing_jdk_names_the_tool_and_leaves_nothing_running(dev: Dev) -> None:
    result = dev.run("up", path=str(Path(sys.executable).parent))
    assert result.returncode == 1, result.stdout + result.stderr
    assert "java" in result.stderr and "kafka" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert _our_processes(dev.state) == []
