"""``choreo schemas push`` and ``check --registry`` against the stack's registry, and a service
whose registry does not answer at start-up."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from choreo._schemas.commands import check_command, push_command
from choreo._schemas.registry_client import RegistryClient

pytestmark = pytest.mark.stack
ROOT = Path(__file__).resolve().parents[2]
FIELDS = [{"name": "id", "type": "string"}]


def _project(tmp_path: Path) -> tuple[Path, str]:
    """A project with one topic carrying one event type, ``test.reg.Thing`` v1."""
    topic = f"reg.{uuid.uuid4().hex[:8]}"
    schemas = tmp_path / "schemas"
    (schemas / "test" / "reg").mkdir(parents=True)
    (schemas / "catalog.toml").write_text(
        f'[topics."{topic}"]\nevents = ["test.reg.Thing"]\nkey = "id"\ncompatibility = "backward"\n'
    )
    _write(tmp_path, 1, FIELDS)
    return tmp_path, f"{topic}-value"


def _write(project: Path, version: int, fields: list[dict[str, object]]) -> None:
    schema = {"type": "record", "name": "Thing", "namespace": "test.reg", "fields": fields}
    path = project / "schemas" / "test" / "reg" / f"Thing.v{version}.avsc"
    path.write_text(json.dumps(schema))


def _cli(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "choreo._cli.main", "schemas", "--project", str(project)]
    return subprocess.run(
        [*command, *args], capture_output=True, text=True, timeout=120, cwd=ROOT, check=False
    )


@pytest.fixture
def pushed(
    schema_registry: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> tuple[Path, str, RegistryClient]:
    """A one-topic project (``test.reg.Thing`` v1) pushed to the registry."""
    project, subject = _project(tmp_path)
    registry = RegistryClient(schema_registry, 10.0)
    assert push_command(project, registry) == 0
    assert f"pushed {subject} (backward): v1 id" in capsys.readouterr().out
    return project, subject, registry


def test_an_edited_published_version_fails_check_and_push_naming_the_field(
    pushed: tuple[Path, str, RegistryClient],
    schema_registry: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    project, subject, registry = pushed
    assert check_command(project, registry) == 0  # what the registry holds is the repo's v1
    capsys.readouterr()

    # v1 edited after it was published: the repo alone cannot tell, the registry can.
    _write(project, 1, [*FIELDS, {"name": "colour", "type": "string"}])
    assert check_command(project) == 0
    checked = _cli(project, "check", "--registry", schema_registry)
    assert checked.returncode == 1, checked.stdout + checked.stderr
    assert f"incompatible: {subject}" in checked.stdout
    assert "'colour'" in checked.stdout
    assert push_command(project, registry) == 1
    pushed = capsys.readouterr().out
    assert f"incompatible: {subject}" in pushed
    assert "'colour'" in pushed


def test_an_incompatible_new_version_fails_check_and_push_naming_the_field(
    pushed: tuple[Path, str, RegistryClient], capsys: pytest.CaptureFixture[str]
) -> None:
    project, subject, registry = pushed
    _write(project, 2, [*FIELDS, {"name": "size", "type": "int"}])

    assert check_command(project, registry) == 1
    checked = capsys.readouterr().out.splitlines()
    assert any(line.startswith(f"incompatible: {subject}") and "'size'" in line for line in checked)
    assert push_command(project, registry) == 1
    pushed = capsys.readouterr().out
    assert f"incompatible: {subject}" in pushed
    assert "Thing v2" in pushed
    assert "'size'" in pushed
    assert registry.latest(subject) is not None
    assert "size" not in str(registry.latest(subject)), "the registry kept v1 as the latest"


def test_a_version_registered_from_elsewhere_fails_check_as_the_registry_ahead(
    pushed: tuple[Path, str, RegistryClient], capsys: pytest.CaptureFixture[str]
) -> None:
    project, subject, registry = pushed
    fields: list[dict[str, object]] = [
        *FIELDS,
        {"name": "note", "type": ["null", "string"], "default": None},
    ]
    other = {"type": "record", "name": "Thing", "namespace": "test.reg", "fields": fields}
    registry.register(subject, json.dumps(other))  # a Java team's v2, never added to the repo

    assert check_command(project, registry) == 1
    [ahead] = [line for line in capsys.readouterr().out.splitlines() if "ahead" in line]
    assert ahead.startswith(f"ahead: {subject}") and "2 versions, the repo 1" in ahead
    _write(project, 2, fields)  # the repo catches up: nothing to report
    assert check_command(project, registry) == 0


def test_a_service_whose_registry_does_not_answer_stops_at_start_naming_it(
    pushed_schemas: Path, start_service: Callable[..., subprocess.Popen[str]], tmp_path: Path
) -> None:
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{sock.getsockname()[1]}/apis/ccompat/v7"
    process = start_service(
        "registry_service",
        pushed_schemas,
        CHOREO_SCHEMA_REGISTRY__URL=dead,
        CHOREO_SCHEMA_REGISTRY__TIMEOUT_S="2",
    )
    assert process.wait(timeout=60) == 1
    output = (tmp_path / "registry_service-0.log").read_text().strip().splitlines()
    errors = [line for line in output if line.startswith("choreo:")]
    assert len(errors) == 1, output
    assert dead in errors[0]
    assert "unavailable" in errors[0]
