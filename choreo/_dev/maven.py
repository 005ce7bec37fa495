"""Fetch jars from Maven Central with ``mvn``, once per destination directory.

Kafka, Connect and Debezium are plain jars on Maven Central, so a pom under
``infra/`` plus one ``mvn`` run replaces any tarball download. Each pom names
its own goal (``<defaultGoal>``) and writes into ``-Dchoreo.out``.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Mapping
from pathlib import Path

from choreo._dev.component import ComponentError
from choreo._dev.progress import long_step

MARKER = ".choreo-fetched"
"""Written last, so its presence means the directory is complete."""

_INSTALL_HINT = {
    "mvn": "apt-get install maven",
    "java": "apt-get install openjdk-17-jdk-headless",
    "openssl": "apt-get install openssl",
}


def require_tool(tool: str) -> str:
    """The tool's path, or a ComponentError that says how to install it."""
    found = shutil.which(tool)
    if found is None:
        hint = _INSTALL_HINT.get(tool, f"install {tool}")
        raise ComponentError(f"'{tool}' is not on PATH; install it with: {hint}")
    return found


def fetch_jars(pom: Path, dest: Path, properties: Mapping[str, str] | None = None) -> None:
    """Run the pom's default goal into ``dest`` unless an earlier run completed.

    mvn writes into a fresh sibling directory that is renamed into place only
    on success, so a failed or concurrent run never leaves a half-filled
    ``dest`` behind. ``properties`` become ``-D`` flags (versions, say).
    """
    if (dest / MARKER).exists():
        return
    require_tool("java")
    mvn = require_tool("mvn")
    if not pom.is_file():
        raise ComponentError(f"maven: no pom at {pom}")
    dest.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
    work.chmod(0o755)  # mkdtemp makes it private; the cache is shared and read-only in use
    log = dest.parent / f"{dest.name}.mvn.log"
    repository, flags = _local_repository()
    argv = [mvn, "-B", "-q", "-Dstyle.color=never", "-f", str(pom), f"-Dchoreo.out={work}"]
    argv += flags
    argv += [f"-D{key}={value}" for key, value in (properties or {}).items()]
    what = f"maven: fetching {dest.name} jars from Maven Central"
    try:
        with long_step(what, repository):
            with log.open("w") as out:
                out.write(" ".join(argv) + "\n")
                out.flush()
                done = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=out)
            if done.returncode:
                raise ComponentError(
                    f"maven: fetching jars with {pom} failed{_first_error(log)}; mvn output: {log}"
                )
        (work / MARKER).write_text(" ".join(argv[1:]) + "\n")
        _move_into_place(work, dest)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    log.unlink(missing_ok=True)


def _local_repository() -> tuple[Path, list[str]]:
    """Where mvn downloads to, and the flags that say so: ``CHOREO_MAVEN_REPO`` or mvn's default.

    The override lets a first run be tried on an empty repository without
    emptying the one every clone on the machine shares; the progress line
    watches the same directory, so its sizes stay true.
    """
    override = os.environ.get("CHOREO_MAVEN_REPO")
    if override:
        return Path(override), [f"-Dmaven.repo.local={override}"]
    return Path.home() / ".m2" / "repository", []


def _first_error(log: Path) -> str:
    """mvn's first ``[ERROR]`` line, shortened, so the one-line message says what broke."""
    for line in log.read_text(errors="replace").splitlines():
        if "[ERROR]" in line:
            text = re.sub(r"\x1b\[[0-9;]*m", "", line).replace("[ERROR]", "").strip()
            return f" ({text[:200]})" if text else ""
    return ""


def _move_into_place(work: Path, dest: Path) -> None:
    """Rename ``work`` to ``dest``; a complete ``dest`` from a racing run wins."""
    if (dest / MARKER).exists():
        return
    if dest.exists():
        shutil.rmtree(dest)
    work.rename(dest)
