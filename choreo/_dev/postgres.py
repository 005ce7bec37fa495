"""PostgreSQL from Debian's packages, in its own data directory, ready for Debezium.

PostgreSQL refuses to run as root, so when we are root the server runs as the
``postgres`` system user that Debian's package creates. That user may not be
able to enter the project's directory (a clone under ``/root``), so its data
then lives in ``/var/tmp/choreo-<key>/`` with a symlink from the state dir.
The socket goes to a short path in the temp dir: socket paths are limited to
about 100 bytes.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from choreo._dev.component import ComponentError, Launch, StackPaths

USER = "choreo"
PASSWORD = "choreo"
DATABASE = "choreo"


def _bin_dir() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"))
    return Path(found[-1]).parent if found else None


class Postgres:
    """A PostgreSQL server with ``wal_level=logical`` and a replication-capable role."""

    name = "postgres"
    install_lane = "apt"

    def __init__(self, port: int = 5432) -> None:
        self.port = port
        self.ports = (port,)

    @property
    def dsn(self) -> str:
        return f"postgresql://{USER}:{PASSWORD}@127.0.0.1:{self.port}/{DATABASE}"

    def install(self, paths: StackPaths) -> None:
        if _bin_dir() is not None:
            return
        if os.geteuid() != 0 or shutil.which("apt-get") is None:
            raise ComponentError(
                "postgres: server binaries missing; run: apt-get install postgresql"
            )
        log = paths.log("postgres-install")
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("w") as out:
            for argv in (["apt-get", "update"], ["apt-get", "install", "-y", "postgresql"]):
                env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
                if subprocess.run(argv, stdout=out, stderr=out, env=env).returncode:
                    raise ComponentError(f"postgres: '{' '.join(argv)}' failed; log: {log}")

    def _run_as(self) -> str | None:
        return "postgres" if os.geteuid() == 0 else None

    def _bin(self, tool: str) -> str:
        bin_dir = _bin_dir()
        if bin_dir is None:
            raise ComponentError(
                "postgres: server binaries missing; run: apt-get install postgresql"
            )
        return str(bin_dir / tool)

    def data_dir(self, paths: StackPaths) -> Path:
        if self._run_as() is None:
            return paths.data(self.name)
        return Path("/var/tmp") / f"choreo-{paths.key}" / self.name

    def socket_dir(self, paths: StackPaths) -> Path:
        return Path(tempfile.gettempdir()) / f"choreo-pg-{paths.key}"

    def prepare(self, paths: StackPaths) -> None:
        data = self.data_dir(paths)
        user = self._run_as()
        sockets = self.socket_dir(paths)
        sockets.mkdir(exist_ok=True)
        if user:
            shutil.chown(sockets, user, user)
        data.mkdir(parents=True, exist_ok=True)
        if user:
            shutil.chown(data, user, user)
            link = paths.data(self.name)
            link.parent.mkdir(parents=True, exist_ok=True)
            if not link.is_symlink():
                link.symlink_to(data)
        if (data / "PG_VERSION").exists():
            return
        log = paths.log("postgres-initdb")
        with log.open("w") as out:
            argv = [
                self._bin("initdb"),
                "-D",
                str(data),
                "-U",
                "postgres",
                "-E",
                "UTF8",
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                "--no-instructions",
            ]
            done = subprocess.run(argv, stdout=out, stderr=out, user=user, cwd="/")
        if done.returncode:
            raise ComponentError(f"postgres: initdb failed; log: {log}")
        with (data / "pg_hba.conf").open("a") as hba:
            hba.write("host replication all 127.0.0.1/32 scram-sha-256\n")

    def launch(self, paths: StackPaths) -> Launch:
        data = self.data_dir(paths)
        settings = {
            "port": str(self.port),
            "listen_addresses": "127.0.0.1",
            "unix_socket_directories": str(self.socket_dir(paths)),
            "wal_level": "logical",
            "max_wal_senders": "10",
            "max_replication_slots": "10",
            "fsync": "off",
        }
        argv = [self._bin("postgres"), "-D", str(data)]
        for key, value in settings.items():
            argv += ["-c", f"{key}={value}"]
        return Launch(argv=argv, cwd=Path("/"), user=self._run_as())

    def healthy(self) -> bool:
        probe = subprocess.run(
            [self._bin("pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(self.port)],
            capture_output=True,
        )
        return probe.returncode == 0

    def after_start(self, paths: StackPaths) -> None:
        sql = (
            f"DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{USER}') THEN "
            f"CREATE ROLE {USER} LOGIN REPLICATION PASSWORD '{PASSWORD}'; END IF; END $$;"
        )
        self._psql(paths, "postgres", sql)
        exists = self._psql(
            paths, "postgres", f"SELECT 1 FROM pg_database WHERE datname = '{DATABASE}'"
        )
        if exists.strip() != "1":
            self._psql(paths, "postgres", f"CREATE DATABASE {DATABASE} OWNER {USER}")

    def _psql(self, paths: StackPaths, database: str, sql: str) -> str:
        argv = [
            self._bin("psql"),
            "-h",
            str(self.socket_dir(paths)),
            "-p",
            str(self.port),
            "-U",
            "postgres",
            "-d",
            database,
            "-tAq",
            "-v",
            "ON_ERROR_STOP=1",
            "-c",
            sql,
        ]
        done = subprocess.run(argv, capture_output=True, text=True, user=self._run_as(), cwd="/")
        if done.returncode:
            raise ComponentError(f"postgres: setup SQL failed: {done.stderr.strip()}")
        return done.stdout
