"""The contract every local-stack component fulfils.

The stack manager (``stack.py``) only knows this interface, so adding a
component never touches the start/stop/status logic.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, runtime_checkable


@dataclass(frozen=True)
class StackPaths:
    """Where a component keeps what it downloads and what it writes at run time."""

    cache: Path
    """Downloads and builds, shared by every clone on the machine (~/.cache/choreo)."""
    state: Path
    """Per-project run-time data: data dirs, logs, pid files (.choreo/)."""
    project: Path
    """The project root, where ``infra/`` lives."""

    def data(self, name: str) -> Path:
        return self.state / "data" / name

    def log(self, name: str) -> Path:
        logs = self.state / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        return logs / f"{name}.log"

    @property
    def key(self) -> str:
        """A short id of this state dir, for things that must live outside it."""
        return hashlib.sha1(str(self.state.resolve()).encode()).hexdigest()[:10]


@dataclass(frozen=True)
class Launch:
    """How to run a component as a foreground child process."""

    argv: list[str]
    env: dict[str, str] = field(default_factory=lambda: dict(os.environ))
    cwd: Path | None = None
    user: str | None = None
    """Run as this system user (PostgreSQL will not run as root)."""


class ComponentError(Exception):
    """A component could not be installed, prepared or started."""


class Component(Protocol):
    """One process of the local stack (Kafka, PostgreSQL, Connect, Jaeger)."""

    name: str
    port: int
    """The port whose readiness means the component is up (others may exist)."""

    @property
    def ports(self) -> tuple[int, ...]:
        """Every port it listens on, checked free before it starts."""

    install_lane: str
    """Installs in different lanes run concurrently; one lane runs in order (mvn shares ~/.m2)."""

    def install(self, paths: StackPaths) -> None:
        """Download/build into ``paths.cache``; idempotent and fast when cached."""

    def prepare(self, paths: StackPaths) -> None:
        """First-start initialisation in ``paths.data(name)`` (format storage, initdb)."""

    def launch(self, paths: StackPaths) -> Launch:
        """The foreground command; the manager spawns it and records its pid."""

    def healthy(self) -> bool:
        """A real readiness probe (a protocol answer, not an open port alone)."""

    def after_start(self, paths: StackPaths) -> None:
        """One-off setup that needs the process up (roles, databases)."""


@runtime_checkable
class MayBeStale(Protocol):
    """A component whose running process can lag behind its config (an older start)."""

    def stale(self) -> str | None:
        """What the running process lacks and how to fix it, or None when it matches."""
