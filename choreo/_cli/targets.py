"""``module`` or ``module:attribute`` on the command line: import it, say clearly when not."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from types import ModuleType

from choreo._errors import ConfigError


def import_target(target: str, what: str) -> tuple[ModuleType, str]:
    """The imported module and the attribute part ('' if none) of ``target``.

    The current directory goes on ``sys.path`` first, as ``python -m`` would
    do, so ``choreo run services.orders`` works from the project root.
    """
    module_name, _, attribute = target.partition(":")
    if str(Path.cwd()) not in sys.path:
        sys.path.insert(0, str(Path.cwd()))
    try:
        return importlib.import_module(module_name), attribute
    except ModuleNotFoundError as error:
        raise ConfigError(f"cannot import {what} module {module_name!r}: {error}") from None
