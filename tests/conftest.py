"""Shared test fixtures; also puts tests/ on sys.path (pytest does for a rootless conftest),
so ``import builders`` works."""

from __future__ import annotations

import shutil
import tomllib
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def isolated_schemas(tmp_path: Path) -> Path:
    """The project's schemas with every topic renamed ``<topic>.<random>``: no old records."""
    return _isolate_schemas(tmp_path / "schemas")


@pytest.fixture(scope="module")
def module_schemas(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``isolated_schemas`` shared by one test module (one server process for all its tests)."""
    return _isolate_schemas(tmp_path_factory.mktemp("module") / "schemas")


def _isolate_schemas(target: Path) -> Path:
    shutil.copytree(ROOT / "schemas", target)
    catalog = tomllib.loads((ROOT / "schemas" / "catalog.toml").read_text())
    suffix = uuid.uuid4().hex[:8]
    lines = []
    for name, spec in catalog["topics"].items():
        events = ", ".join(f'"{e}"' for e in spec["events"])
        lines += [
            f'[topics."{name}.{suffix}"]',
            f"events = [{events}]",
            f'key = "{spec["key"]}"',
            f"partitions = {spec['partitions']}",
            f"scheduled = {'true' if spec.get('scheduled') else 'false'}",
            "",
        ]
    (target / "catalog.toml").write_text("\n".join(lines))
    return target
