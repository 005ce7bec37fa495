"""A small Kafka Connect REST client (stdlib ``urllib``), for ``choreo cdc`` and tests.

Every failure becomes a choreo error naming the connector and carrying
Connect's own message: :class:`TransportError` when Connect cannot be reached
(or keeps answering 409 while its workers rebalance), :class:`ConfigError`
when Connect refuses the request (an invalid config, an unknown connector).
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any, Literal

from choreo._errors import ConfigError, TransportError

DEFAULT_URL = "http://127.0.0.1:8083"
REBALANCE_WAIT_S = 30.0
"""How long a request answered 409 (a rebalance in progress) is retried."""

Applied = Literal["created", "updated", "unchanged"]


@dataclass(frozen=True)
class Failure:
    """A stack trace from Connect, cut to what fits a status line."""

    error: str
    """The trace's first line (what Connect reports)."""
    cause: str | None
    """Its last ``Caused by:`` line: usually the actual reason (a wrapped exception)."""

    @classmethod
    def of(cls, trace: object) -> Failure | None:
        if not isinstance(trace, str) or not trace.strip():
            return None
        lines = [line.strip() for line in trace.strip().splitlines()]
        causes = [
            line.removeprefix("Caused by: ") for line in lines if line.startswith("Caused by:")
        ]
        return cls(lines[0], causes[-1] if causes else None)

    def __str__(self) -> str:
        return self.error if self.cause is None else f"{self.error} (cause: {self.cause})"


@dataclass(frozen=True)
class TaskState:
    id: int
    state: str
    """RUNNING, PAUSED, FAILED, UNASSIGNED, RESTARTING or STOPPED."""
    failure: Failure | None


@dataclass(frozen=True)
class ConnectorState:
    name: str
    state: str
    failure: Failure | None
    tasks: tuple[TaskState, ...]

    @property
    def running(self) -> bool:
        """The connector and every task run (a connector without tasks is not yet running)."""
        return (
            self.state == "RUNNING"
            and bool(self.tasks)
            and all(task.state == "RUNNING" for task in self.tasks)
        )

    @property
    def error(self) -> str | None:
        """The connector's failure, else the first failed task's, for one-line reports."""
        if self.failure is not None:
            return str(self.failure)
        return next((f"task {t.id}: {t.failure}" for t in self.tasks if t.failure), None)


class ConnectClient:
    """The handful of REST calls choreo needs, each answering in choreo's terms."""

    def __init__(self, url: str = DEFAULT_URL, *, timeout_s: float = 10.0) -> None:
        self.url = url.rstrip("/")
        self.timeout_s = timeout_s

    def apply(self, name: str, config: dict[str, str]) -> Applied:
        """Create or update a connector; a config equal to the current one is not re-sent.

        Re-sending an identical config would restart the connector's tasks for
        nothing, so ``apply`` is safe to run on every deploy.
        """
        current = self.config(name)
        if current is not None:
            current.pop("name", None)
            if current == {key: str(value) for key, value in config.items()}:
                return "unchanged"
        self._call("PUT", f"/connectors/{name}/config", name, config)
        return "created" if current is None else "updated"

    def config(self, name: str) -> dict[str, str] | None:
        """The connector's stored config, or None if Connect has no such connector."""
        found = self._call("GET", f"/connectors/{name}/config", name, missing_ok=True)
        return None if found is None else dict(found)

    def status(self, name: str) -> ConnectorState | None:
        """Connector and task states with each failure's first line; None if absent."""
        body = self._call("GET", f"/connectors/{name}/status", name, missing_ok=True)
        if body is None:
            return None
        connector = body.get("connector", {})
        tasks = tuple(
            TaskState(int(t.get("id", 0)), str(t.get("state")), Failure.of(t.get("trace")))
            for t in body.get("tasks", [])
        )
        return ConnectorState(
            name, str(connector.get("state")), Failure.of(connector.get("trace")), tasks
        )

    def pause(self, name: str) -> None:
        self._call("PUT", f"/connectors/{name}/pause", name)

    def resume(self, name: str) -> None:
        self._call("PUT", f"/connectors/{name}/resume", name)

    def delete(self, name: str, *, missing_ok: bool = False, timeout_s: float = 30.0) -> bool:
        """Remove the connector and return once Connect no longer reports it.

        Connect answers the DELETE before its status endpoint forgets the
        connector, so waiting here keeps a following ``status`` (or a
        re-create) from seeing a ghost. Its replication slot stays: see
        ``choreo.cdc.drop_slot``.
        """
        gone = self._call("DELETE", f"/connectors/{name}", name, missing_ok=missing_ok)
        deadline = time.monotonic() + timeout_s
        while gone is not None and self.status(name) is not None:
            if time.monotonic() > deadline:
                raise TransportError(f"connector {name}: still listed {timeout_s:.0f}s later")
            time.sleep(0.2)
        return gone is not None

    def names(self) -> list[str]:
        return list(self._call("GET", "/connectors", "*"))

    def wait_reachable(self, timeout_s: float = 120.0) -> None:
        """Block until Connect answers ``GET /connectors``; TransportError naming the URL if not.

        For a deploy step started beside Connect (``docker compose up``): a
        worker refuses connections, then answers 503 until it has joined its
        group. The connector list is served by the worker's herder, so once it
        answers, connector configs are taken.
        """
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                self.names()
                return
            except TransportError as error:
                if time.monotonic() > deadline:
                    raise TransportError(
                        f"Kafka Connect at {self.url} not reachable after {timeout_s:.0f}s "
                        f"(last error: {error})"
                    ) from None
            time.sleep(0.5)

    def wait_running(self, name: str, timeout_s: float = 60.0) -> ConnectorState:
        """Block until the connector and its tasks run; a FAILED state raises at once.

        Connect being unreachable for a while (a worker restarting) is waited out.
        """
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                state = self.status(name)
            except TransportError:  # the worker is restarting: keep asking until the deadline
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
                continue
            if state is not None:
                if state.running:
                    return state
                if state.error is not None:
                    raise ConfigError(f"connector {name} failed: {state.error}")
            if time.monotonic() > deadline:
                seen = "absent" if state is None else state.state
                raise TransportError(
                    f"connector {name} not running after {timeout_s:.0f}s (state: {seen})"
                )
            time.sleep(0.2)

    def _call(
        self,
        method: str,
        path: str,
        name: str,
        body: dict[str, str] | None = None,
        *,
        missing_ok: bool = False,
    ) -> Any:
        """One request, retried while Connect answers 409; JSON in and out."""
        data = None if body is None else json.dumps(body).encode()
        deadline = time.monotonic() + REBALANCE_WAIT_S
        while True:
            request = urllib.request.Request(
                self.url + path,
                data=data,
                method=method,
                headers={"Content-Type": "application/json", "Accept": "application/json"},
            )
            try:
                with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                    raw = response.read()
                    return json.loads(raw) if raw else {}
            except urllib.error.HTTPError as error:
                message = _message(error)
                if error.code == 404 and missing_ok:
                    return None
                if error.code == 409 and time.monotonic() < deadline:
                    time.sleep(0.5)
                    continue
                kind = TransportError if error.code in (409,) or error.code >= 500 else ConfigError
                raise kind(
                    f"Kafka Connect at {self.url}: {method} connector {name} "
                    f"refused ({error.code}): {message}"
                ) from None
            except (OSError, ValueError) as error:
                raise TransportError(
                    f"Kafka Connect at {self.url} did not answer ({method} connector {name}): "
                    f"{error}"
                ) from None


def _message(error: urllib.error.HTTPError) -> str:
    """Connect's ``{"error_code": ..., "message": ...}`` body, or the raw text."""
    try:
        raw = error.read().decode(errors="replace")
    except OSError:
        return str(error.reason)
    try:
        message = json.loads(raw).get("message")
    except (ValueError, AttributeError):
        message = None
    return str(message or raw or error.reason)
