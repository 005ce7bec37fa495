"""Every process of the order pipeline, started as a user would start them, and stopped again.

Each service is ``choreo run services.X`` with its health port, the tracker is ``choreo saga
run services.order_saga``, the webhook is ``choreo ingress``. Logs go to
``.choreo/logs/demo/``; a process that dies during the demo fails it with its log's tail.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

SERVICES = (
    "orders",
    "inventory",
    "payments",
    "fraud",
    "approvals",
    "shipping",
    "notifications",
    "catalog_sync",
)
LIVE_ONLY = frozenset({"catalog_sync"})
"""Its change topic appears with the first product change; until then it is alive, not ready."""
READY_TIMEOUT_S = 90.0
ROOT = Path(__file__).resolve().parents[1]
CONSUMER_SETTINGS = '[kafka.client_options]\n"session.timeout.ms" = "6000"\n'
"""A killed process keeps its partitions until its session times out (45 s by default)."""


@dataclass
class Process:
    name: str
    argv: list[str]
    health_port: int | None
    log: Path
    popen: subprocess.Popen[bytes] | None = None

    def tail(self, lines: int = 15) -> str:
        text = self.log.read_text(errors="replace").splitlines() if self.log.exists() else []
        return "\n".join(text[-lines:])


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Fleet:
    """``with Fleet(env, logs) as fleet: fleet.wait_ready()``; stops everything on exit."""

    def __init__(self, env: dict[str, str], logs: Path, ingress_port: int) -> None:
        self.env = {**os.environ, **env}
        logs.mkdir(parents=True, exist_ok=True)
        config = logs / "consumers.toml"
        config.write_text(CONSUMER_SETTINGS)
        cli = [sys.executable, "-m", "choreo._cli.main"]
        self.processes = [
            self._process(
                name, [*cli, "run", f"services.{name}", "--config", str(config)], logs, health=True
            )
            for name in SERVICES
        ]
        tracker = [*cli, "saga", "--config", str(config), "run", "services.order_saga"]
        self.processes.append(self._process("saga-tracker", tracker, logs))
        ingress = [*cli, "ingress", "--config", "deploy/ingress.toml", "--port", str(ingress_port)]
        self.processes.append(self._process("ingress", ingress, logs))
        self.ingress_port = ingress_port
        self._restarting = threading.Lock()
        """Held while a crash test swaps a process: its killed popen is not a crash."""

    @staticmethod
    def _process(name: str, argv: list[str], logs: Path, *, health: bool = False) -> Process:
        port = free_port() if health else None
        if port is not None:
            argv = [*argv, "--metrics-port", str(port)]
        return Process(name, argv, port, logs / f"{name}.log")

    def __enter__(self) -> Fleet:
        for process in self.processes:
            self._start(process, "wb")
        return self

    def _start(self, process: Process, mode: str) -> None:
        with process.log.open(mode) as log:
            process.popen = subprocess.Popen(
                process.argv, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT
            )

    def crash_and_restart(self, name: str) -> None:
        """SIGKILL (no drain, no commit, open transactions left behind), then start again."""
        [process] = [p for p in self.processes if p.name == name]
        assert process.popen is not None
        with self._restarting:
            process.popen.kill()
            process.popen.wait()
            self._start(process, "ab")

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def wait_ready(self) -> None:
        """Until every service answers /readyz and the ingress /readyz, or raise naming who."""
        deadline = time.monotonic() + READY_TIMEOUT_S
        urls = {p.name: self._ready_url(p) for p in self.processes}
        waiting = {name: url for name, url in urls.items() if url is not None}
        while waiting:
            self.check_alive()
            waiting = {name: url for name, url in waiting.items() if not _answers(url)}
            if waiting and time.monotonic() > deadline:
                raise RuntimeError(f"not ready after {READY_TIMEOUT_S:.0f}s: {', '.join(waiting)}")
            time.sleep(0.3)

    def _ready_url(self, process: Process) -> str | None:
        if process.name == "ingress":
            return f"http://127.0.0.1:{self.ingress_port}/readyz"
        if process.health_port is not None:
            probe = "healthz" if process.name in LIVE_ONLY else "readyz"
            return f"http://127.0.0.1:{process.health_port}/{probe}"
        return None

    def check_alive(self) -> None:
        with self._restarting:
            dead = [p for p in self.processes if p.popen is None or p.popen.poll() is not None]
        if dead:
            first = dead[0]
            code = first.popen.poll() if first.popen else None
            raise RuntimeError(
                f"{first.name} exited with code {code}; its log ({first.log}) ends:\n{first.tail()}"
            )

    def stop(self) -> None:
        """SIGTERM everyone (they drain and commit), then wait; SIGKILL stragglers."""
        running = [p.popen for p in self.processes if p.popen and p.popen.poll() is None]
        for popen in running:
            popen.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 30
        for popen in running:
            try:
                popen.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                popen.kill()
                popen.wait()


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False
