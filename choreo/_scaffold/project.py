"""Write a new project from the templates, then generate its models with choreo's own codegen.

The models are generated rather than templated so a new project starts with
exactly what ``choreo schemas check`` will later hold it to.
"""

from __future__ import annotations

import keyword
import re
from pathlib import Path
from string import Template

from choreo._errors import ChoreoError
from choreo._scaffold import templates
from choreo._schemas import Catalog
from choreo._schemas.codegen import write as write_models
from choreo._schemas.commands import SCHEMAS_DIR

_NAME = re.compile(r"[a-z][a-z0-9_]{0,39}")


class ScaffoldError(ChoreoError):
    """The project cannot be written (bad name, directory in the way)."""


def create_project(target: Path, name: str | None = None) -> list[Path]:
    """Write the project into ``target`` (which must not exist or be empty); the files written.

    ``name`` (default: the directory's name) becomes the Python package and the
    events' namespace, so it must be a lower-case identifier.
    """
    package = target.name if name is None else name
    if not _NAME.fullmatch(package) or keyword.iskeyword(package):
        raise ScaffoldError(
            f"project name {package!r}: use a lower-case Python identifier "
            "(letters, digits, '_'; starting with a letter), e.g. 'trips'"
        )
    if target.exists() and any(target.iterdir()):
        raise ScaffoldError(f"{target} exists and is not empty; choose a new directory")
    values = {"package": package, "title": package.replace("_", " ").title()}
    written = []
    for relative, text in templates.FILES.items():
        path = target / Template(relative).substitute(values)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(Template(text).substitute(values))
        written.append(path)
    written.append(write_models(Catalog.load(target / SCHEMAS_DIR), target))
    return written
