"""``choreo dev`` as a user runs it, on a second stack with its own ports and state dir."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
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


PORTS = dict(zip(NAMES, free_ports(len(NAMES)), strict=True))


def _env(state: Path, path: str | None = None) -> dict[str, str]:
    env = dict(os.environ, CHOREO_STATE_DIR=str(state))
    env.update({f"CHOREO_{name}_PORT": str(port) for name, port in PORTS.items()})
    if path is not None:
        env["PATH"] = path
    return env


def _choreo(state: Path, *args: str, path: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "choreo._cli.main", "dev", *args],
        env=_env(state, path),
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
def state(tmp_path: Path) -> Iterator[Path]:
    state = tmp_path / "state"
    yield state
    _choreo(state, "down")
    # Run as root, PostgreSQL's data lives outside the state dir (in /var/tmp): 46 MB a run.
    data = Postgres().data_dir(StackPaths(cache=Path(), state=state, project=Path()))
    if not data.is_relative_to(state):
        shutil.rmtree(data.parent, ignore_errors=True)


def test_up_twice_reuses_everything_and_down_leaves_no_process(state: Path) -> None:
    first = _choreo(state, "up")
    assert first.returncode == 0, first.stdout + first.stderr
    pids = _pids(state)
    assert sorted(pids) == ["connect", "jaeger", "kafka", "postgres", "registry"]

    second = _choreo(state, "up")
    assert second.returncode == 0, second.stdout + second.stderr
    assert second.stdout.count("already running") == 5
    assert "started" not in second.stdout
    assert _pids(state) == pids

    status = _choreo(state, "status")
    assert status.returncode == 0
    for name, pid in pids.items():
        assert any(
            line.split()[:3] == [name, str(PORTS[name.upper()]), pid]
            for line in status.stdout.splitlines()
        ), status.stdout
    assert "no SASL_SSL listener" not in status.stdout
    assert "AvroConverter plugin" not in status.stdout  # Connect found the Apicurio converter
    assert Kafka(port=PORTS["KAFKA"], secure_port=PORTS["KAFKA_SECURE"]).stale() is None
    older = Kafka(port=PORTS["KAFKA"], secure_port=free_ports(1)[0])  # as if started without it
    assert "choreo dev down kafka && choreo dev up" in (older.stale() or "")

    down = _choreo(state, "down")
    assert down.returncode == 0, down.stderr
    assert _in_groups(list(pids.values())) == []
    assert _our_processes(state) == []
    assert _pids(state) == {}


def test_a_taken_port_names_the_component_and_leaves_nothing_running(state: Path) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", PORTS["KAFKA"]))
        squatter.listen()
        result = _choreo(state, "up")
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"kafka: port {PORTS['KAFKA']} is taken" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert _our_processes(state) == []


def test_a_missing_jdk_names_the_tool_and_leaves_nothing_running(state: Path) -> None:
    result = _choreo(state, "up", path=str(Path(sys.executable).parent))
    assert result.returncode == 1, result.stdout + result.stderr
    assert "java" in result.stderr and "kafka" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert _our_processes(state) == []
