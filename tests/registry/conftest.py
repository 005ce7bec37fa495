"""The registry tests share one copy of the project's schemas, on topics of their own, pushed
once to the stack's registry: the payments topic is written in the registry wire format."""

from __future__ import annotations

import re
import shutil
import subprocess
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from choreo._schemas.commands import push_command
from choreo._schemas.registry_client import RegistryClient

ROOT = Path(__file__).resolve().parents[2]
REGISTRY_TOPIC = "shop.payments"
"""The topic these tests' catalog writes in the registry wire format."""

StartService = Callable[..., subprocess.Popen[str]]


def copy_schemas(target: Path, registry_topics: tuple[str, ...] = (REGISTRY_TOPIC,)) -> Path:
    """The project's schemas with each topic renamed ``<topic>.<random>`` (its keys kept) and
    ``registry_topics`` written in the registry wire format."""
    shutil.copytree(ROOT / "schemas", target)
    suffix = uuid.uuid4().hex[:8]

    def rename(match: re.Match[str]) -> str:
        line = f'[topics."{match[1]}.{suffix}"]'
        return line + ('\nwire_format = "registry"' if match[1] in registry_topics else "")

    catalog = target / "catalog.toml"
    text = re.sub(r'^\[topics\."([^"]+)"\]', rename, catalog.read_text(), flags=re.M)
    catalog.write_text(text)
    return target


@pytest.fixture(scope="session")
def pushed_schemas(schema_registry: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Schemas on topics of their own, every version registered by ``choreo schemas push``."""
    project = tmp_path_factory.mktemp("registry-project")
    copy_schemas(project / "schemas")
    assert push_command(project, RegistryClient(schema_registry, 10.0)) == 0
    return project / "schemas"


@pytest.fixture
def start_service(choreo_run: StartService) -> StartService:
    """``choreo run MODULE`` from this directory, as a user starts it; killed after the test."""

    def start(module: str, schemas: Path, **env: str) -> subprocess.Popen[str]:
        return choreo_run(
            module, path=Path(__file__).parent, CHOREO_SCHEMAS_DIR=str(schemas), **env
        )

    return start
