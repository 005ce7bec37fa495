"""``choreo schemas check``, ``push`` and ``codegen``, minus the argument parsing.

Both print one line per problem and return an exit code, so CI can run ``check`` and show every
problem at once instead of stopping at the first.
"""

from __future__ import annotations

from pathlib import Path

from choreo._errors import ChoreoError
from choreo._schemas.catalog import Catalog
from choreo._schemas.codegen import is_fresh, write
from choreo._schemas.compat import check_catalog
from choreo._schemas.registry_client import RegistryClient
from choreo._schemas.registry_commands import push, registry_problems

SCHEMAS_DIR = "schemas"


def check_command(project_root: Path, registry: RegistryClient | None = None) -> int:
    """Parse everything, check compatibility and generated-model freshness; 0 when all good.

    With ``registry``, also whether the newest versions may follow what it holds.
    """
    try:
        catalog = Catalog.load(project_root / SCHEMAS_DIR)
    except ChoreoError as exc:
        print(f"error: {exc}")
        return 1
    problems = [f"incompatible: {problem}" for problem in check_catalog(catalog)]
    if catalog.codegen_module is not None:
        try:
            if not is_fresh(catalog, project_root):
                problems.append(
                    f"stale: {catalog.codegen_module} does not match schemas/; "
                    "run `choreo schemas codegen`"
                )
        except ChoreoError as exc:
            problems.append(f"error: {exc}")
    if registry is not None:
        try:
            problems += registry_problems(catalog, registry)
        except ChoreoError as exc:
            problems.append(f"error: {exc}")
    for problem in problems:
        print(problem)
    if problems:
        return 1
    print(f"ok: {len(catalog.event_types)} event types on {len(catalog.topics)} topics")
    return 0


def push_command(project_root: Path, registry: RegistryClient) -> int:
    """Register every schema version in ``registry``; 0 when all were accepted."""
    try:
        problems = push(Catalog.load(project_root / SCHEMAS_DIR), registry)
    except ChoreoError as exc:
        problems = [f"error: {exc}"]
    for problem in problems:
        print(problem)
    return 1 if problems else 0


def codegen_command(project_root: Path) -> int:
    """Regenerate the models module named in ``catalog.toml``."""
    try:
        catalog = Catalog.load(project_root / SCHEMAS_DIR)
        path = write(catalog, project_root)
    except ChoreoError as exc:
        print(f"error: {exc}")
        return 1
    print(f"wrote {path}")
    return 0
