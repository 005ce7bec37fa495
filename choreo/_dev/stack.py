"""Start, stop and inspect the local stack as plain processes, no Docker.

Every component is a foreground child in its own session; its pid and the
kernel's start time are recorded so ``down`` only ever signals our own
processes, even after a reboot reused the pid.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from choreo._dev.component import Component, ComponentError, MayBeStale, StackPaths
from choreo._dev.readiness import await_ready

STOP_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class ComponentStatus:
    name: str
    port: int
    pid: int | None
    healthy: bool
    stale: str | None = None
    """Set when the running process lacks part of its config (see ``MayBeStale``)."""


def _start_time(pid: int) -> str | None:
    """The process start time in clock ticks, or None if no such process.

    A zombie (killed, not yet reaped) counts as gone: it will never serve again.
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    if fields[0] == "Z":
        _reap(pid)
        return None
    return fields[19]


def _group_alive(pgid: int) -> bool:
    """Whether any live process (zombies aside) is left in the process group we started.

    The group, not just its leader: PostgreSQL's backends and helpers a
    component forks must be gone too before ``down`` says it is stopped.
    """
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, 0)
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if fields[2] == str(pgid) and fields[0] != "Z":
                return True
    return False


def _port_taken(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


class Stack:
    """The components in start order; ``down`` stops them in reverse."""

    def __init__(
        self,
        paths: StackPaths,
        components: Sequence[Component],
        say: Callable[[str], None] = print,
    ) -> None:
        self.paths = paths
        self.components = list(components)
        self.say = say

    def _pidfile(self, component: Component) -> Path:
        return self.paths.state / "run" / f"{component.name}.pid"

    def pid(self, component: Component) -> int | None:
        """Our recorded process for the component, if it is still that process."""
        try:
            pid_text, started = self._pidfile(component).read_text().split()
        except (OSError, ValueError):
            return None
        pid = int(pid_text)
        return pid if _start_time(pid) == started else None

    def status(self) -> list[ComponentStatus]:
        return [
            ComponentStatus(
                c.name,
                c.port,
                pid := self.pid(c),
                healthy := pid is not None and c.healthy(),
                _stale(c) if healthy else None,
            )
            for c in self.components
        ]

    def up(self) -> None:
        """Bring every component up, reusing those already running; all or nothing."""
        pending = [c for c in self.components if self.pid(c) is None]
        self._check_ports(pending)
        self._install(pending)
        started: list[Component] = []
        try:
            for wave in _waves(self.components):
                starting = [c for c in wave if c in pending]
                started += starting
                self._start(starting)
                for component in wave:
                    if component not in starting:
                        self._await_ready(component)
                        self.say(f"{component.name}: already running (pid {self.pid(component)})")
                        if (stale := _stale(component)) is not None:
                            self.say(f"{component.name}: {stale}")
        except ComponentError:
            for component in reversed(started):
                self._stop(component)
            raise

    def down(self, names: Sequence[str] = ()) -> None:
        """Stop the named components (all when none are named), dependents first."""
        unknown = set(names) - {c.name for c in self.components}
        if unknown:
            raise ComponentError(f"no such component: {', '.join(sorted(unknown))}")
        for component in reversed(self.components):
            if not names or component.name in names:
                self._stop(component)

    def kill(self, name: str) -> None:
        """SIGKILL one component's processes, as a crash would: no shutdown, nothing flushed."""
        component = next((c for c in self.components if c.name == name), None)
        if component is None:
            raise ComponentError(f"no such component: {name}")
        pid = self.pid(component)
        self._pidfile(component).unlink(missing_ok=True)
        if pid is None:
            return
        _kill_group(pid)
        self.say(f"{component.name}: killed (pid {pid})")

    def _install(self, components: list[Component]) -> None:
        lanes: dict[str, list[Component]] = {}
        for component in components:
            lanes.setdefault(component.install_lane, []).append(component)

        def install_lane(lane: list[Component]) -> None:
            for component in lane:
                with _named(component):
                    component.install(self.paths)

        with ThreadPoolExecutor(max_workers=max(1, len(lanes))) as pool:
            for future in [pool.submit(install_lane, lane) for lane in lanes.values()]:
                future.result()

    def _check_ports(self, components: list[Component]) -> None:
        """Before anything starts, so a taken port leaves nothing half-started."""
        for component in components:
            for port in component.ports:
                if _port_taken(port):
                    raise ComponentError(
                        f"{component.name}: port {port} is taken by another process; "
                        "free it or set its CHOREO_*_PORT (see README)"
                    )

    def _start(self, components: list[Component]) -> None:
        """Spawn them all, then wait for each: nodes of one quorum only answer together."""
        processes = []
        for component in components:
            with _named(component):
                processes.append((component, self._spawn(component), time.monotonic()))
        for component, process, began in processes:
            with _named(component):
                self._await_ready(component, process)
                component.after_start(self.paths)
            self.say(
                f"{component.name}: started on 127.0.0.1:{component.port} "
                f"(pid {process.pid}, ready in {time.monotonic() - began:.1f}s)"
            )

    def _spawn(self, component: Component) -> subprocess.Popen[bytes]:
        component.prepare(self.paths)
        launch = component.launch(self.paths)
        log = self.paths.log(component.name)
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("ab") as out:
            process = subprocess.Popen(
                launch.argv,
                env=launch.env,
                cwd=launch.cwd,
                user=launch.user,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        pidfile = self._pidfile(component)
        pidfile.parent.mkdir(parents=True, exist_ok=True)
        pidfile.write_text(f"{process.pid} {_start_time(process.pid)}\n")
        return process

    def _await_ready(
        self, component: Component, process: subprocess.Popen[bytes] | None = None
    ) -> None:
        await_ready(component, self.paths.log(component.name), self.say, process)

    def _stop(self, component: Component) -> None:
        pid = self.pid(component)
        self._pidfile(component).unlink(missing_ok=True)
        if pid is None:
            return
        os.killpg(pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT_S
        while _group_alive(pid) and time.monotonic() < deadline:
            _reap(pid)
            time.sleep(0.1)
        if _group_alive(pid):
            _kill_group(pid)
        self.say(f"{component.name}: stopped (pid {pid})")


def _kill_group(pgid: int) -> None:
    """SIGKILL the process group and wait until none of it is left."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)
    while _group_alive(pgid):
        _reap(pgid)
        time.sleep(0.05)


def _waves(components: list[Component]) -> Iterator[list[Component]]:
    """Components in start order, neighbours with the same ``start_group`` in one wave."""
    wave: list[Component] = []
    for component in components:
        group = getattr(component, "start_group", None)
        if wave and (group is None or group != getattr(wave[0], "start_group", None)):
            yield wave
            wave = []
        wave.append(component)
    if wave:
        yield wave


def _stale(component: Component) -> str | None:
    return component.stale() if isinstance(component, MayBeStale) else None


@contextlib.contextmanager
def _named(component: Component) -> Iterator[None]:
    """Make every error say which component it is about."""
    try:
        yield
    except ComponentError as error:
        if str(error).startswith(f"{component.name}:"):
            raise
        raise ComponentError(f"{component.name}: {error}") from error


def _reap(pid: int) -> None:
    """Collect a child we spawned in this process so it does not linger as a zombie."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)
