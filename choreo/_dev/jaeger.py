"""Jaeger v2 all-in-one (in-memory storage) as a local-stack component.

Jaeger ships no binary we can fetch here, so it is built from the Go module
proxy through the wrapper module in ``infra/jaeger``: ``go install pkg@version``
refuses Jaeger because its go.mod has ``replace`` lines, so the wrapper's
go.mod repeats them and pins every dependency in a committed go.sum.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.request
from http.client import HTTPException
from pathlib import Path

from choreo._dev.component import ComponentError, Launch, StackPaths
from choreo._dev.progress import long_step

JAEGER_VERSION = "2.13.0"
"""The Jaeger v2 release; names the cache directory and the binary's --version."""
JAEGER_MODULE = "github.com/jaegertracing/jaeger"
JAEGER_MODULE_VERSION = "v1.76.0"
"""The proxy only serves v1.x tags (the module path has no /v2); v1.76.0 is
the same commit as v2.13.0. Must match the require line in infra/jaeger/go.mod."""
JAEGER_COMMIT = "63b27e1810a710ac54dc4522da0538e540bdc545"
JAEGER_PACKAGE = f"{JAEGER_MODULE}/cmd/jaeger"
MIN_GO = (1, 21)
"""Oldest go that builds this: from 1.21 on, go fetches the toolchain that
go.mod asks for (1.24.6) from the module proxy by itself."""
BUILD_TIMEOUT_S = 3600.0
"""A cold build fetches ~1.2 GiB of modules and compiles ~2,300 packages (~9 min on 2 cores)."""

DEFAULT_PORTS = {"http": 16686, "grpc": 16685, "otlp_grpc": 4317, "otlp_http": 4318}
"""The endpoints infra/jaeger/config.yaml is written with, each once."""


class Jaeger:
    """Trace collector and query API for the services' OpenTelemetry spans."""

    name = "jaeger"
    install_lane = "go"
    """Only go's own caches are shared, and go locks them itself."""

    def __init__(
        self,
        port: int = 16686,
        otlp_grpc_port: int = 4317,
        otlp_http_port: int = 4318,
        *,
        query_grpc_port: int = 16685,
    ) -> None:
        ports = [port, otlp_grpc_port, otlp_http_port, query_grpc_port]
        if len(set(ports)) != len(ports):
            raise ComponentError(f"jaeger: ports must differ, got {ports}")
        self.port = port
        self.ports = tuple(ports)
        self.otlp_grpc_port = otlp_grpc_port
        self.otlp_http_port = otlp_http_port
        self.query_grpc_port = query_grpc_port

    # -- paths ---------------------------------------------------------------

    @staticmethod
    def binary(paths: StackPaths) -> Path:
        """Where the built binary lives, shared by every clone on the machine."""
        return paths.cache / f"jaeger-{JAEGER_VERSION}" / "jaeger"

    @staticmethod
    def module_dir(paths: StackPaths) -> Path:
        return paths.project / "infra" / "jaeger"

    def config_path(self, paths: StackPaths) -> Path:
        return paths.data(self.name) / "config.yaml"

    # -- Component -----------------------------------------------------------

    def install(self, paths: StackPaths) -> None:
        """Build the binary once; a later call only checks that it exists."""
        dest = self.binary(paths)
        if dest.is_file():
            return
        module = self.module_dir(paths)
        _check_pin(module)
        go = _find_go()
        env = dict(os.environ)
        # Debian's go may default to GOTOOLCHAIN=local; auto lets an older go
        # fetch the toolchain go.mod names from the module proxy.
        env.setdefault("GOTOOLCHAIN", "auto")
        dest.parent.mkdir(parents=True, exist_ok=True)
        # Build under a temporary name so an interrupted build is never used.
        tmp = dest.with_name(f".jaeger.{os.getpid()}.tmp")
        log = paths.state / "logs" / "jaeger-build.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        version_pkg = f"{JAEGER_MODULE}/internal/version"
        ldflags = (
            f"-s -w -X {version_pkg}.latestVersion=v{JAEGER_VERSION}"
            f" -X {version_pkg}.commitSHA={JAEGER_COMMIT}"
        )
        argv = [go, "build", "-mod=readonly", "-trimpath", "-ldflags", ldflags]
        argv += ["-o", str(tmp), JAEGER_PACKAGE]
        try:
            with long_step(f"jaeger: go build v{JAEGER_VERSION}", _module_cache(go, env)):
                rc = _run_logged(argv, module, env, log)
                if rc != 0:
                    raise ComponentError(
                        f"jaeger: go build failed (exit {rc}): {_first_error(log)}; full log: {log}"
                    )
                _check_binary(tmp, log)
            os.replace(tmp, dest)
        finally:
            tmp.unlink(missing_ok=True)

    def prepare(self, paths: StackPaths) -> None:
        """Write the config with this instance's ports; rewritten each time so
        a port change takes effect (memory storage keeps no other state)."""
        template = self.module_dir(paths) / "config.yaml"
        try:
            text = template.read_text(encoding="utf-8")
        except OSError as exc:
            raise ComponentError(f"jaeger: cannot read {template}: {exc}") from exc
        wanted = {
            "http": self.port,
            "grpc": self.query_grpc_port,
            "otlp_grpc": self.otlp_grpc_port,
            "otlp_http": self.otlp_http_port,
        }
        for key, default in DEFAULT_PORTS.items():
            endpoint = f"127.0.0.1:{default}"
            if text.count(endpoint) != 1:
                raise ComponentError(f"jaeger: {template} must contain {endpoint} exactly once")
            # A placeholder first, so a new port equal to another default is
            # not rewritten again by a later key.
            text = text.replace(endpoint, f"127.0.0.1:@{key}@")
        for key, port in wanted.items():
            text = text.replace(f"127.0.0.1:@{key}@", f"127.0.0.1:{port}")
        out = self.config_path(paths)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text, encoding="utf-8")

    def launch(self, paths: StackPaths) -> Launch:
        binary = self.binary(paths)
        config = self.config_path(paths)
        if not binary.is_file():
            raise ComponentError(f"jaeger: {binary} is missing; run install first")
        if not config.is_file():
            raise ComponentError(f"jaeger: {config} is missing; run prepare first")
        return Launch(argv=[str(binary), "--config", str(config)], cwd=paths.data(self.name))

    def healthy(self) -> bool:
        """The query API answers /api/services with JSON: storage and the HTTP
        server are both up (an open port alone is not enough)."""
        url = f"http://127.0.0.1:{self.port}/api/services"
        # No proxies: an http_proxy in the environment must not see loopback.
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        try:
            with opener.open(url, timeout=2.0) as resp:
                if resp.status != 200:
                    return False
                body = json.loads(resp.read())
        except (urllib.error.URLError, HTTPException, OSError, ValueError):
            return False
        return isinstance(body, dict) and "data" in body

    def after_start(self, paths: StackPaths) -> None:
        """Nothing to set up: memory storage needs no schema."""


# -- helpers -----------------------------------------------------------------


def _find_go() -> str:
    """The go binary, also at Go's default install path when not on PATH."""
    go = shutil.which("go")
    if go is None and Path("/usr/local/go/bin/go").is_file():
        go = "/usr/local/go/bin/go"
    hint = (
        f"install a Go toolchain >= {MIN_GO[0]}.{MIN_GO[1]} (the official"
        " tarball into /usr/local/go, or `apt-get install golang-go` where"
        " that package is new enough) and put go on PATH"
    )
    if go is None:
        raise ComponentError(f"jaeger: `go` not found, needed to build Jaeger; {hint}")
    try:
        out = subprocess.run(
            [go, "env", "GOVERSION"], capture_output=True, text=True, timeout=60, check=True
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError) as exc:
        raise ComponentError(f"jaeger: `{go} env GOVERSION` failed ({exc}); {hint}") from exc
    m = re.match(r"go(\d+)\.(\d+)", out)
    if m is None or (int(m.group(1)), int(m.group(2))) < MIN_GO:
        raise ComponentError(f"jaeger: {go} is {out or 'of unknown version'}; {hint}")
    return go


def _check_pin(module: Path) -> None:
    """Refuse to build if go.mod pins another version than the cache dir says."""
    gomod = module / "go.mod"
    try:
        text = gomod.read_text(encoding="utf-8")
    except OSError as exc:
        raise ComponentError(f"jaeger: cannot read {gomod}: {exc}") from exc
    pattern = rf"^\s*(require\s+)?{re.escape(JAEGER_MODULE)}\s+{re.escape(JAEGER_MODULE_VERSION)}\b"
    if not re.search(pattern, text, re.MULTILINE):
        raise ComponentError(
            f"jaeger: {gomod} does not require {JAEGER_MODULE} {JAEGER_MODULE_VERSION};"
            " update JAEGER_* in choreo/_dev/jaeger.py together with go.mod"
        )


def _module_cache(go: str, env: dict[str, str]) -> Path | None:
    """Where go downloads modules (most of a first build's wait), or None if go won't say."""
    try:
        found = subprocess.run(
            [go, "env", "GOMODCACHE"], env=env, capture_output=True, text=True, timeout=30
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return Path(found) if found else None


def _run_logged(argv: list[str], cwd: Path, env: dict[str, str], log: Path) -> int:
    """Run a build with its output in ``log``; kill the whole group on timeout
    (go leaves compiler children behind otherwise)."""
    with log.open("w", encoding="utf-8") as out:
        out.write(f"$ (cd {cwd} && {' '.join(argv)})\n")
        out.flush()
        started = time.monotonic()
        try:
            proc = subprocess.Popen(
                argv,
                cwd=cwd,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        except OSError as exc:
            raise ComponentError(f"jaeger: cannot run {argv[0]}: {exc}") from exc
        try:
            rc = proc.wait(timeout=BUILD_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            raise ComponentError(
                f"jaeger: go build took over {BUILD_TIMEOUT_S:.0f}s and was killed; log: {log}"
            ) from None
        except BaseException:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            raise
        out.write(f"# exit {rc} after {time.monotonic() - started:.0f}s\n")
    return rc


def _check_binary(binary: Path, log: Path) -> None:
    """The fresh binary must run and report the pinned version."""
    try:
        res = subprocess.run([str(binary), "--version"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError) as exc:
        raise ComponentError(f"jaeger: built binary does not run: {exc}") from exc
    with log.open("a", encoding="utf-8") as out:
        out.write(f"$ jaeger --version\n{res.stdout}{res.stderr}")
    if res.returncode != 0 or JAEGER_VERSION not in res.stdout:
        raise ComponentError(
            f"jaeger: built binary reports {res.stdout.strip() or res.stderr.strip()!r},"
            f" expected {JAEGER_VERSION}; log: {log}"
        )


def _first_error(log: Path) -> str:
    """The first line go printed that is not progress, for a one-line error
    (go's last lines are often a `to add: go get ...` hint, not the cause)."""
    try:
        lines = log.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return "no log"
    noise = ("$ ", "#", "go: downloading ", "go: finding ", "go: extracting ")
    for line in lines:
        line = line.strip()
        if line and not line.startswith(noise):
            return line[:300]
    return "no output"
