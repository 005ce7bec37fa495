"""``choreo schemas check`` and ``choreo schemas codegen``, minus the argument parsing.

Both print one line per problem and return an exit code, so CI can run ``check`` and show every
problem at once instead of stopping at the first.
"""

from __future__ import annotations

from pathlib import Path

from choreo._errors import ChoreoError
from choreo._schemas.catalog import Catalog
from choreo._schemas.codegen import is_fresh, write
from choreo._schemas.compat import check_catalog

SCHEMAS_DIR = "schemas"


def check_command(project_root: Path) -> int:
    """Parse everything, check compatibility and generated-model freshness; 0 when all good."""
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
    for problem in problems:
        print(problem)
    if problems:
        return 1
    print(f"ok: {len(catalog.event_types)} event types on {len(catalog.topics)} topics")
    return 0


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
