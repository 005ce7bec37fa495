"""One pinned venv per third-party framework, so their dependencies never meet choreo's.

FastStream, faust-streaming and Quix Streams each pin their own Kafka client (and Quix Streams a
confluent-kafka range that choreo's may leave); installing them beside choreo would benchmark
whichever versions the resolver happened to pick. Each gets ``bench/.venvs/<name>`` built from
``bench/requirements/<name>.txt``. A venv is reused while a stamp of its requirements file and
interpreter matches, so only the first run (or a changed pin) pays for ``pip install``.

Run alone to build them all: ``.venv/bin/python bench/venvs.py``.
"""

from __future__ import annotations

import fcntl
import hashlib
import shutil
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REQUIREMENTS = BENCH / "requirements"
VENVS = BENCH / ".venvs"
STAMP = ".choreo-bench-stamp"


class VenvError(RuntimeError):
    """A venv could not be built; the message says why, for the results table."""


def _stamp(requirements: Path) -> str:
    digest = hashlib.sha256(requirements.read_bytes())
    digest.update(sys.version.encode())
    return digest.hexdigest()


def ensure(name: str) -> Path:
    """Return the python of ``bench/.venvs/<name>``, building the venv first if it is stale."""
    requirements = REQUIREMENTS / f"{name}.txt"
    if not requirements.exists():
        raise VenvError(f"no {requirements.relative_to(BENCH.parent)}")
    VENVS.mkdir(exist_ok=True)
    with (VENVS / f".{name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two harnesses at once must not build one venv twice
        return _build(name, requirements)


def _build(name: str, requirements: Path) -> Path:
    target = VENVS / name
    python = target / "bin" / "python"
    stamp = _stamp(requirements)
    if python.exists() and (target / STAMP).exists() and (target / STAMP).read_text() == stamp:
        return python
    shutil.rmtree(target, ignore_errors=True)
    _run([sys.executable, "-m", "venv", str(target)], f"venv {name}")
    _run([str(python), "-m", "pip", "install", "-q", "-U", "pip"], f"pip upgrade {name}")
    _run([str(python), "-m", "pip", "install", "-q", "-r", str(requirements)], f"install {name}")
    freeze = subprocess.run(
        [str(python), "-m", "pip", "freeze"], capture_output=True, text=True, check=False
    )
    (target / "freeze.txt").write_text(freeze.stdout)
    (target / STAMP).write_text(stamp)
    return python


def _run(command: list[str], what: str) -> None:
    try:
        out = subprocess.run(command, capture_output=True, text=True, timeout=900, check=False)
    except subprocess.TimeoutExpired as exc:
        raise VenvError(f"{what}: timed out after 900 s") from exc
    if out.returncode:
        last = (out.stderr or out.stdout).strip().splitlines()[-1:] or ["no output"]
        raise VenvError(f"{what}: exit {out.returncode}: {last[0][:200]}")


if __name__ == "__main__":
    for requirements in sorted(REQUIREMENTS.glob("*.txt")):
        try:
            print(requirements.stem, ensure(requirements.stem))
        except VenvError as exc:
            print(requirements.stem, "FAILED:", exc)
